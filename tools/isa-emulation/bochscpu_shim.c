/* Preloaded under bochscpu-python 0.4.0 by run.sh, for two reasons:
 *  - its wheel is built against glibc 2.38 and calls the C23 names of strtoull and sscanf,
 *    which older glibcs (Debian 12 has 2.36) lack: they are given here;
 *  - it always emulates the CPU model it hard-codes (Bochs's Cannon Lake, AVX-512 without
 *    VNNI or BF16): its call to that model's constructor is answered with Sapphire Rapids
 *    (AVX512_VNNI, AVX512_BF16, AVX-VNNI), found in the extension named by BOCHSCPU_SO. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

unsigned long long __isoc23_strtoull(const char *s, char **end, int base) {
    return strtoull(s, end, base);
}

int __isoc23_sscanf(const char *s, const char *format, ...) {
    va_list args;
    va_start(args, format);
    int n = vsscanf(s, format, args);
    va_end(args);
    return n;
}

void *_Z23create_corei3_cnl_cpuidP8BX_CPU_C(void *cpu) {
    const char *path = getenv("BOCHSCPU_SO");
    void *library = path ? dlopen(path, RTLD_NOW | RTLD_NOLOAD) : NULL;
    void *(*sapphire_rapids)(void *) =
        library ? (void *(*)(void *))dlsym(library, "_Z28create_sapphire_rapids_cpuidP8BX_CPU_C") : NULL;
    if (!sapphire_rapids) {
        fprintf(stderr, "error: no Sapphire Rapids model in BOCHSCPU_SO=%s\n", path ? path : "(unset)");
        abort();
    }
    return sapphire_rapids(cpu);
}
