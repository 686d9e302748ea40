/*
 * Bench-only compatibility shim for the prebuilt uWebSockets.js binary
 * (@btc-vision/uwebsockets.js), which was linked against glibc 2.38 and
 * references three C23 entry points that glibc 2.36 (Debian 12) lacks.
 * They differ from the classic functions only in accepting "0b" binary
 * prefixes, which uWS never parses, so forwarding is exact for its use.
 * Loaded with LD_PRELOAD by bench/servers/uws.mjs's launcher; never part of
 * the product.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

int __isoc23_sscanf(const char *s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int r = vsscanf(s, fmt, ap);
    va_end(ap);
    return r;
}

long __isoc23_strtol(const char *s, char **end, int base) {
    return strtol(s, end, base);
}

unsigned long __isoc23_strtoul(const char *s, char **end, int base) {
    return strtoul(s, end, base);
}
