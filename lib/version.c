/*
 * lib/version.c — async_version: the version this library was built as.
 *
 * Owns nothing shared. ASYNC_VERSION comes from async/version.h, which the
 * build configures from meson's project version, so the header a program
 * compiles against and the library it runs with can be compared.
 */
#include "internal.h"

const char *async_version(void)
{
    return ASYNC_VERSION;
}
