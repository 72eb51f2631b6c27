/*
 * A QEMU TCG plugin that counts the guest instructions a program executes: all of them,
 * and the multiply-accumulate kinds the int8 and fp32 inner loops are made of. Used by
 * boards/analysis/insn-counts.sh under qemu-aarch64 (Debian's qemu-user 7.2 loads plugins
 * but ships none).
 *
 * Debian has no package with QEMU's plugin header (qemu-plugin.h), so the few declarations
 * this plugin needs are written out below from QEMU's plugin API, version 1 (QEMU 7.x).
 * Counts are exact for a single-threaded guest (inline adds are not atomic): run the
 * program with one thread.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef uint64_t qemu_plugin_id_t;
struct qemu_plugin_tb;
struct qemu_plugin_insn;
typedef struct qemu_info_t qemu_info_t;
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t, struct qemu_plugin_tb *);
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t, void *);

void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t, qemu_plugin_vcpu_tb_trans_cb_t);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t, qemu_plugin_udata_cb_t, void *);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *);
struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *, size_t);
char *qemu_plugin_insn_disas(const struct qemu_plugin_insn *);
const void *qemu_plugin_insn_data(const struct qemu_plugin_insn *);
size_t qemu_plugin_insn_size(const struct qemu_plugin_insn *);
void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *, enum qemu_plugin_op,
                                              void *, uint64_t);
void qemu_plugin_register_vcpu_insn_exec_inline(struct qemu_plugin_insn *,
                                                enum qemu_plugin_op, void *, uint64_t);
void qemu_plugin_outs(const char *);

__attribute__((visibility("default"))) int qemu_plugin_version = 1;

/* Mnemonics counted one by one; everything else only in the total. */
static const char *const KINDS[] = {"sdot", "udot", "smull", "smull2", "smlal", "smlal2",
                                    "sadalp", "fmla", "fmul", "fadd", "mla", "madd"};
#define NKINDS (sizeof KINDS / sizeof KINDS[0])
static uint64_t total, counts[NKINDS];

/*
 * QEMU 7.2's disassembler predates the dot-product extension and prints SDOT/UDOT as
 * `.byte`, so those two are recognised by their encodings (Arm ARM, "SDOT (vector)" and
 * "SDOT (by element)"; UDOT is the same with U, bit 29, set).
 */
static int dot_kind(const struct qemu_plugin_insn *insn) {
    uint32_t w;
    if (qemu_plugin_insn_size(insn) != 4)
        return -1;
    memcpy(&w, qemu_plugin_insn_data(insn), 4);
    if ((w & 0x9FE0FC00u) == 0x0E809400u || (w & 0x9FC0F400u) == 0x0F80E000u)
        return (w >> 29) & 1; /* 0: sdot, 1: udot (KINDS[0], KINDS[1]) */
    return -1;
}

static int kind_of(const char *disas) {
    size_t n = strcspn(disas, " \t");
    for (size_t k = 0; k < NKINDS; k++)
        if (strlen(KINDS[k]) == n && strncmp(disas, KINDS[k], n) == 0)
            return (int)k;
    return -1;
}

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
    size_t n = qemu_plugin_tb_n_insns(tb);
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &total, n);
    for (size_t i = 0; i < n; i++) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        int k = dot_kind(insn);
        if (k < 0) {
            char *d = qemu_plugin_insn_disas(insn);
            k = d ? kind_of(d) : -1;
            free(d);
        }
        if (k >= 0)
            qemu_plugin_register_vcpu_insn_exec_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64,
                                                       &counts[k], 1);
    }
}

static void at_exit(qemu_plugin_id_t id, void *p) {
    char line[4096];
    int off = snprintf(line, sizeof line, "{\"insns\":%llu", (unsigned long long)total);
    for (size_t k = 0; k < NKINDS && off < (int)sizeof line - 64; k++)
        off += snprintf(line + off, sizeof line - off, ",\"%s\":%llu", KINDS[k],
                        (unsigned long long)counts[k]);
    snprintf(line + off, sizeof line - off, "}\n");
    qemu_plugin_outs(line);
}

__attribute__((visibility("default"))) int
qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv) {
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
    qemu_plugin_register_atexit_cb(id, at_exit, NULL);
    return 0;
}
