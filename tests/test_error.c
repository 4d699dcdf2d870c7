/* Tests of the error model: codes, names and messages from one table. */
#include "mp_test.h"

TEST(errno_codes_are_negative_errno)
{
    CHECK_EQ(MP_EAGAIN, -EAGAIN);
    CHECK_EQ(MP_ETIMEDOUT, -ETIMEDOUT);
    CHECK_EQ(MP_EOWNERDEAD, -EOWNERDEAD);
    CHECK_EQ(MP_EMSGSIZE, -EMSGSIZE);
    CHECK_EQ(MP_EPIPE, -EPIPE);
}

TEST(own_codes_live_below_errno)
{
    int own[] = {MP_EOF,   MP_ECLOSED, MP_EWORKER, MP_EBROKEN,
                 MP_EAUTH, MP_ETASK,   MP_EINIT,   MP_ESTATE};
    for (size_t i = 0; i < sizeof own / sizeof own[0]; i++) {
        CHECK_LE(own[i], -4000);
        for (size_t j = i + 1; j < sizeof own / sizeof own[0]; j++)
            CHECK_NE(own[i], own[j]);
    }
}

TEST(names_and_messages)
{
    CHECK_STREQ(mp_err_name(MP_ETIMEDOUT), "MP_ETIMEDOUT");
    CHECK_STREQ(mp_strerror(MP_ETIMEDOUT), "timed out");
    CHECK_STREQ(mp_err_name(MP_EOF), "MP_EOF");
    CHECK_CONTAINS(mp_strerror(MP_EOF), "end of stream");
    CHECK_STREQ(mp_err_name(MP_EOWNERDEAD), "MP_EOWNERDEAD");
    CHECK_STREQ(mp_err_name(0), "OK");
    CHECK_STREQ(mp_err_name(17), "OK");
    CHECK_STREQ(mp_strerror(0), "success");
}

TEST(unlisted_errno_falls_back_to_libc)
{
    /* EXDEV is not in the table: the C library names it. */
    CHECK_STREQ(mp_err_name(-EXDEV), "EXDEV");
    CHECK_CONTAINS(mp_strerror(-EXDEV), "link");
    CHECK_STREQ(mp_err_name(-3999999), "MP_EUNKNOWN");
    CHECK_STREQ(mp_strerror(-3999999), "unknown error");
}

TEST(version)
{
    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", MP_VERSION_MAJOR, MP_VERSION_MINOR, MP_VERSION_PATCH);
    CHECK_STREQ(mp_version_string(), want);
}

MPT_MAIN()
