/* Channel names: a user name such as "robot/pose" becomes a safe OS object name. */
#ifndef SHMI_NAME_H
#define SHMI_NAME_H

#include <stddef.h>
#include <stdint.h>

#define SHMI_MAX_CHANNEL_NAME 255 /* bytes of a user name */
#define SHMI_OS_NAME_CAP 256

/* The name prefix of a pattern's segments ("pub" for PUB/SUB), NULL for an unknown pattern. */
const char *shmi_pattern_prefix(uint32_t pattern);
/* Validates `name` and writes "shmcomm_<prefix>_<escaped name>" to out[cap]; escapes every byte
 * outside [A-Za-z0-9._-] as '+' and two hex digits; hashes names too long for the platform. */
int shmi_make_os_name(const char *name, uint32_t pattern, char *out, size_t cap);
/* 1 if os_name is a plausible shmcomm object name (prefix, allowed characters), else 0. */
int shmi_is_shmcomm_os_name(const char *os_name);

#endif
