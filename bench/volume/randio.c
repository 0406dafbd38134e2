/* Random 4 KiB O_DIRECT reads or writes on a block device for a fixed time; no libc.
 *
 *   randio r|w DEVICE SPAN_MIB SECONDS
 *
 * Offsets are 4 KiB-aligned, uniform over the first SPAN_MIB MiB (xorshift64), one
 * request at a time (queue depth 1). Writes end with fdatasync, inside the timed span.
 * Prints "ops=N ns=T" (T from CLOCK_MONOTONIC) or "error=WHAT errno=E".
 * Built by bench/volume/run with gcc -static -nostdlib (a few KiB, so it fits in
 * user-data as base64); x86-64 Linux system calls only.
 */
typedef unsigned long u64;
typedef long i64;

static i64 sys(i64 n, i64 a, i64 b, i64 c, i64 d) {
    i64 ret;
    register i64 r10 __asm__("r10") = d;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10)
                     : "rcx", "r11", "memory");
    return ret;
}

enum { SYS_write = 1, SYS_open = 2, SYS_pread = 17, SYS_pwrite = 18, SYS_exit = 60,
       SYS_fdatasync = 75, SYS_clock_gettime = 228 };
#define O_RDONLY 0
#define O_RDWR 2
#define O_DIRECT 040000
#define BLOCK 4096

static char buf[BLOCK] __attribute__((aligned(BLOCK)));

static u64 now_ns(void) {
    i64 ts[2];
    sys(SYS_clock_gettime, 1 /* CLOCK_MONOTONIC */, (i64)ts, 0, 0);
    return (u64)ts[0] * 1000000000UL + (u64)ts[1];
}

static u64 parse(const char *s) {
    u64 v = 0;
    while (*s >= '0' && *s <= '9') v = v * 10 + (u64)(*s++ - '0');
    return v;
}

static char *put_str(char *p, const char *s) {
    while (*s) *p++ = *s++;
    return p;
}

static char *put_num(char *p, u64 v) {
    char tmp[24];
    int n = 0;
    do { tmp[n++] = (char)('0' + v % 10); v /= 10; } while (v);
    while (n) *p++ = tmp[--n];
    return p;
}

static void finish(const char *k1, u64 v1, const char *k2, u64 v2) {
    char line[96], *p = line;
    p = put_num(put_str(p, k1), v1);
    p = put_num(put_str(p, k2), v2);
    *p++ = '\n';
    sys(SYS_write, 1, (i64)line, p - line, 0);
    sys(SYS_exit, 0, 0, 0, 0);
}

void cmain(i64 *sp) {
    char **argv = (char **)(sp + 1);
    if (sp[0] != 5) finish("error=usage ops=", 0, " errno=", 0);
    int writing = argv[1][0] == 'w';
    u64 blocks = parse(argv[3]) * (1024 * 1024 / BLOCK);
    u64 limit = parse(argv[4]) * 1000000000UL;
    i64 fd = sys(SYS_open, (i64)argv[2], (writing ? O_RDWR : O_RDONLY) | O_DIRECT, 0, 0);
    if (fd < 0) finish("error=open ops=", 0, " errno=", (u64)-fd);
    for (int i = 0; i < BLOCK; i++) buf[i] = (char)(i * 131 + 7);
    u64 x = 0x9E3779B97F4A7C15UL ^ now_ns(), ops = 0, start = now_ns(), elapsed = 0;
    while (elapsed < limit) {
        for (int batch = 0; batch < 16; batch++) {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            i64 off = (i64)((x % blocks) * BLOCK);
            i64 done = sys(writing ? SYS_pwrite : SYS_pread, fd, (i64)buf, BLOCK, off);
            if (done != BLOCK) finish("error=io ops=", ops, " errno=", (u64)-done);
            ops++;
        }
        elapsed = now_ns() - start;
    }
    if (writing) {
        i64 r = sys(SYS_fdatasync, fd, 0, 0, 0);
        if (r < 0) finish("error=fdatasync ops=", ops, " errno=", (u64)-r);
    }
    finish("ops=", ops, " ns=", now_ns() - start);
}

__asm__(".globl _start\n_start:\n\txor %rbp, %rbp\n\tmov %rsp, %rdi\n\tand $-16, %rsp\n"
        "\tcall cmain\n\thlt\n");
