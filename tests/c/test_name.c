/* Channel-name mapping and validation. */
#include "check.h"
#include "primitives/name.h"
#include "shmcomm.h"

int main(void)
{
    char out[256];
    CHECK_OK(shmc_os_name("robot/pose", SHMC_PATTERN_PUBSUB, out, sizeof out));
    CHECK(strcmp(out, "shmcomm_pub_robot+2fpose") == 0);
    CHECK_OK(shmc_os_name("cam_1.rgb-left", SHMC_PATTERN_PUBSUB, out, sizeof out));
    CHECK(strcmp(out, "shmcomm_pub_cam_1.rgb-left") == 0);
    CHECK(shmi_is_shmcomm_os_name(out));

    /* Names that could escape the namespace or are meaningless are refused. */
    CHECK_RC(shmc_os_name("", SHMC_PATTERN_PUBSUB, out, sizeof out), SHMC_ENAME);
    CHECK_RC(shmc_os_name("..", SHMC_PATTERN_PUBSUB, out, sizeof out), SHMC_ENAME);
    CHECK_RC(shmc_os_name("a/../b", SHMC_PATTERN_PUBSUB, out, sizeof out), SHMC_ENAME);
    CHECK_RC(shmc_os_name("a/./b", SHMC_PATTERN_PUBSUB, out, sizeof out), SHMC_ENAME);
    CHECK_RC(shmc_os_name("tab\there", SHMC_PATTERN_PUBSUB, out, sizeof out), SHMC_ENAME);
    CHECK_RC(shmc_os_name(NULL, SHMC_PATTERN_PUBSUB, out, sizeof out), SHMC_EINVAL);
    CHECK_RC(shmc_os_name("x", 999, out, sizeof out), SHMC_EINVAL);
    CHECK_RC(shmc_os_name("robot/pose", SHMC_PATTERN_PUBSUB, out, 5), SHMC_EINVAL);
    /* "a..b" is an ordinary name: only whole '..' components are refused. */
    CHECK_OK(shmc_os_name("a..b", SHMC_PATTERN_PUBSUB, out, sizeof out));

    /* Long names are hashed to fit, and two long names that differ late stay distinct. */
    char a[256], b[256], oa[256], ob[256];
    memset(a, 'x', 250);
    a[250] = '\0';
    memcpy(b, a, sizeof a);
    b[249] = 'y';
    CHECK_OK(shmc_os_name(a, SHMC_PATTERN_PUBSUB, oa, sizeof oa));
    CHECK_OK(shmc_os_name(b, SHMC_PATTERN_PUBSUB, ob, sizeof ob));
    CHECK(strlen(oa) <= 200 && strcmp(oa, ob) != 0);
    CHECK(strchr(oa, '~') != NULL);
    char toolong[300];
    memset(toolong, 'z', 299);
    toolong[299] = '\0';
    CHECK_RC(shmc_os_name(toolong, SHMC_PATTERN_PUBSUB, out, sizeof out), SHMC_ENAME);

    /* Escaping is injective: '+' itself is escaped. */
    CHECK_OK(shmc_os_name("a+2f", SHMC_PATTERN_PUBSUB, oa, sizeof oa));
    CHECK_OK(shmc_os_name("a/", SHMC_PATTERN_PUBSUB, ob, sizeof ob));
    CHECK(strcmp(oa, ob) != 0);

    CHECK(!shmi_is_shmcomm_os_name("other_thing"));
    CHECK(!shmi_is_shmcomm_os_name("shmcomm_pub_../x"));
    puts("name: ok");
    return 0;
}
