#include "name.h"

#include "../platform/platform.h"
#include "shmcomm.h"

#include <stdio.h>
#include <string.h>

#define OS_PREFIX "shmcomm_"

const char *shmi_pattern_prefix(uint32_t pattern)
{
    switch (pattern) {
    case SHMC_PATTERN_PUBSUB: return "pub";
    case SHMC_PATTERN_REQREP: return "req";
    case SHMC_PATTERN_PIPELINE: return "push";
    case SHMC_PATTERN_PAIR_M2S: return "m2s";
    case SHMC_PATTERN_PAIR_S2M: return "s2m";
    case SHMC_PATTERN_STREAM: return "stream";
    default: return NULL;
    }
}

static int plain_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
}

/* Rejects what could escape the namespace or confuse a reader: empty, control bytes, '.'/'..'
 * path components, and names longer than SHMI_MAX_CHANNEL_NAME. */
static int validate(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > SHMI_MAX_CHANNEL_NAME) return SHMC_ENAME;
    const char *component = name;
    for (size_t i = 0; i <= n; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c == '/' || c == '\\' || c == '\0') {
            size_t len = (size_t)(name + i - component);
            if ((len == 1 && component[0] == '.') || (len == 2 && component[0] == '.' && component[1] == '.'))
                return SHMC_ENAME;
            component = name + i + 1;
        } else if (c < 0x20 || c == 0x7F) {
            return SHMC_ENAME;
        }
    }
    return 0;
}

static uint64_t fnv1a64(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    return h;
}

int shmi_make_os_name(const char *name, uint32_t pattern, char *out, size_t cap)
{
    static const char hex[] = "0123456789abcdef";
    if (!name || !out) return SHMC_EINVAL;
    const char *prefix = shmi_pattern_prefix(pattern);
    if (!prefix) return SHMC_EINVAL;
    int rc = validate(name);
    if (rc) return rc;

    char full[3 * SHMI_MAX_CHANNEL_NAME + 32];
    size_t len = 0;
    len += (size_t)snprintf(full, sizeof full, OS_PREFIX "%s_", prefix);
    size_t stem = len;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
        if (plain_char(*p)) {
            full[len++] = (char)*p;
        } else {
            full[len++] = '+';
            full[len++] = hex[*p >> 4];
            full[len++] = hex[*p & 15];
        }
    }
    full[len] = '\0';

    size_t max = shmi_max_os_name();
    if (len > max) {
        /* Keep a readable beginning, then '~' and a hash of the whole user name. */
        size_t keep = max - 17;
        if (keep < stem) keep = stem;
        uint64_t h = fnv1a64(name);
        len = keep;
        full[len++] = '~';
        for (int i = 15; i >= 0; i--) full[len++] = hex[(h >> (4 * i)) & 15];
        full[len] = '\0';
    }
    if (len + 1 > cap) return SHMC_EINVAL;
    memcpy(out, full, len + 1);
    return 0;
}

int shmi_is_shmcomm_os_name(const char *os_name)
{
    if (!os_name || strncmp(os_name, OS_PREFIX, sizeof OS_PREFIX - 1) != 0) return 0;
    size_t n = strlen(os_name);
    if (n >= SHMI_OS_NAME_CAP) return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)os_name[i];
        if (!plain_char(c) && c != '+' && c != '~') return 0;
    }
    return 1;
}
