/* An AVX2-only CPU, as every program's run-time dispatch sees it, on a CPU
 * that has more (AVX-512, VNNI, AMX): the stand-in for an AVX2-only laptop
 * (Zen 3, Haswell to Alder Lake's E-cores) that benches/avx2-only runs a
 * command on. Loaded by LD_PRELOAD; Linux only, on CPUs with CPUID faulting
 * (`cpuid_fault` in /proc/cpuinfo).
 *
 * arch_prctl(ARCH_SET_CPUID, 0) makes every CPUID instruction of the
 * process trap; the SIGSEGV handler below runs the real instruction with
 * faulting briefly off and clears, in what it returns, the feature bits of
 * the AVX-512 family, the VNNI extensions (AVX-VNNI included: Zen 3 has
 * none), AMX and AVX10. Rust's is_x86_feature_detected!, candle's and
 * gemm's kernel choice, ONNX Runtime's cpuinfo and llama.cpp's checks all
 * read CPUID, so each takes its AVX2 code as it would on such a CPU. glibc
 * reads CPUID before this library is loaded: benches/avx2-only masks its
 * string functions with GLIBC_TUNABLES instead.
 *
 * What it cannot change: the core's speed, caches and memory bandwidth.
 * Ratios (ask against llama.cpp, one kernel against another) carry over
 * to an AVX2-only machine; absolute speeds do not. */
#define _GNU_SOURCE
#include <asm/prctl.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

static int set_cpuid(int enabled) { return (int)syscall(SYS_arch_prctl, ARCH_SET_CPUID, enabled); }

#define BIT(n) (1u << (n))

static void masked_cpuid(uint32_t leaf, uint32_t sub, uint32_t r[4]) {
    __asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(leaf), "c"(sub));
    if (leaf == 7 && sub == 0) {
        /* EBX: AVX-512 F, DQ, IFMA, PF, ER, CD, BW, VL */
        r[1] &= ~(BIT(16) | BIT(17) | BIT(21) | BIT(26) | BIT(27) | BIT(28) | BIT(30) | BIT(31));
        /* ECX: AVX-512 VBMI, VBMI2, GFNI, VNNI, BITALG, VPOPCNTDQ */
        r[2] &= ~(BIT(1) | BIT(6) | BIT(8) | BIT(11) | BIT(12) | BIT(14));
        /* EDX: AVX-512 4VNNIW, 4FMAPS, VP2INTERSECT, AMX-BF16, AVX-512 FP16, AMX-TILE, AMX-INT8 */
        r[3] &= ~(BIT(2) | BIT(3) | BIT(8) | BIT(22) | BIT(23) | BIT(24) | BIT(25));
    } else if (leaf == 7 && sub == 1) {
        /* EAX: AVX-VNNI, AVX-512 BF16, AMX-FP16, AVX-IFMA */
        r[0] &= ~(BIT(4) | BIT(5) | BIT(21) | BIT(23));
        /* EDX: AVX-VNNI-INT8, AVX-NE-CONVERT, AVX-VNNI-INT16, AVX10 */
        r[3] &= ~(BIT(4) | BIT(5) | BIT(10) | BIT(19));
    } else if (leaf == 0x24) {
        r[0] = r[1] = r[2] = r[3] = 0; /* AVX10 version and vector lengths */
    }
}

static void on_fault(int sig, siginfo_t *info, void *ctx) {
    ucontext_t *uc = ctx;
    greg_t *g = uc->uc_mcontext.gregs;
    const unsigned char *ip = (const unsigned char *)g[REG_RIP];
    if (ip[0] != 0x0f || ip[1] != 0xa2) {
        /* Not ours: fault again with the default action (a core dump). */
        signal(sig, SIG_DFL);
        (void)info;
        return;
    }
    uint32_t r[4];
    set_cpuid(1);
    masked_cpuid((uint32_t)g[REG_RAX], (uint32_t)g[REG_RCX], r);
    set_cpuid(0);
    g[REG_RAX] = r[0];
    g[REG_RBX] = r[1];
    g[REG_RCX] = r[2];
    g[REG_RDX] = r[3];
    g[REG_RIP] += 2;
}

__attribute__((constructor)) static void avx2_only(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGSEGV, &sa, NULL) != 0 || set_cpuid(0) != 0) {
        static const char msg[] = "avx2-only: this CPU or kernel has no CPUID faulting; refusing to run unmasked\n";
        (void)!write(2, msg, sizeof msg - 1);
        _exit(70);
    }
}
