/* Compiles the public header alone at full warnings and calls through it. */
#include "shmcomm.h"

#include <stdio.h>

int main(void)
{
    if (shmc_version() != SHMC_VERSION) {
        fprintf(stderr, "version mismatch\n");
        return 1;
    }
    if (!shmc_strerror(SHMC_EINVAL) || !shmc_strerror(12345)) return 1;
    shmc_pub_t *pub = NULL;
    return shmc_pub_close(pub); /* closing NULL does nothing */
}
