/*
 * cfi.c — unwind rules compiled from .eh_frame, cached by return address.
 *
 * Every frame a malloc hook unwinds, apart from our own, stops at a call
 * site, so the rule that steps out of it depends only on its return
 * address. For a return address ra we run the DWARF call frame program of
 * the FDE covering ra - 1 (the call instruction) and keep only what a walk
 * that tracks rip, rsp and rbp needs:
 *
 *     CFA       = (rsp or rbp) + cfa_off
 *     caller ip = *(CFA - 8)
 *     caller rbp= *(CFA + rbp_off), or unchanged when rbp_off == 0
 *     caller sp = CFA
 *
 * Anything else (a CFA in another register or an expression, the return
 * address or rbp kept elsewhere, signal frames, code without an FDE) is
 * MS_RULE_FALLBACK: the caller then hands the whole stack to libunwind,
 * which tracks every register. A return address column marked undefined
 * is MS_RULE_END, the outermost frame (_start, clone3).
 *
 * The FDE is found with _dl_find_object (glibc 2.35, lock-free and
 * async-signal-safe, unlike dl_iterate_phdr: safe in a fork child, M4)
 * and the binary search table of .eh_frame_hdr.
 *
 * Rules are cached in a table shared by all threads (slots.c): ra -> rule.
 *   C1  a slot's key goes 0 -> ra by CAS and never changes again; ra has
 *       one slot, or two if two threads inserted it while the table grew
 *       (slots.c T4): each then computes the rule, the same one.
 *   C2  rule is written with one atomic store after the key; a reader that
 *       finds the key with rule 0 (not stored yet) computes the rule itself.
 *   C3  every stored rule carries the code generation it was computed in
 *       (never 0); a rule of another generation is recomputed and stored
 *       again. The generation moves when an object is unloaded, since
 *       another object may then be loaded at the same address.
 * A fork child inherits the table: C1-C3 hold whatever the other threads
 * of the parent were doing (a half-inserted slot only stays a miss).
 */
#include "memscope_internal.h"

#include <dlfcn.h>
#include <sys/mman.h>

/* Region 0: 256 return addresses, one page; the last region 2^20 (slots.c). */
#define RULE_TABLE_BITS0 8
#define PROBES 32

/* DWARF register numbers of the x86-64 psABI. */
#define DW_RBP 6
#define DW_RSP 7
#define DW_RA 16

/* DW_EH_PE pointer encodings. */
#define PE_OMIT 0xff
#define PE_FMT 0x0f
#define PE_APP 0x70
#define PE_INDIRECT 0x80
#define PE_PCREL 0x10
#define PE_DATAREL 0x30

static struct ms_slots rules;
static uint32_t code_gen = 1; /* C3; 0 once it ran out: rules off */

int ms_cfi_init(void)
{
	return ms_slots_init(&rules, RULE_TABLE_BITS0, PROBES);
}

uint32_t ms_cfi_generation(void)
{
	return __atomic_load_n(&code_gen, __ATOMIC_ACQUIRE);
}

void ms_cfi_code_changed(void)
{
	uint32_t g = __atomic_load_n(&code_gen, __ATOMIC_ACQUIRE);
	/* MS_RULE_GEN_MAX generations: then every stack goes to libunwind. */
	__atomic_store_n(&code_gen, g && g < MS_RULE_GEN_MAX ? g + 1 : 0, __ATOMIC_RELEASE);
}

/* ---- reading .eh_frame ---- */

struct reader {
	const uint8_t *p, *end;
	int bad;
};

static uint64_t read_uleb(struct reader *r)
{
	uint64_t v = 0;
	unsigned shift = 0;
	while (r->p < r->end) {
		uint8_t b = *r->p++;
		if (shift < 64)
			v |= (uint64_t)(b & 0x7f) << shift;
		shift += 7;
		if (!(b & 0x80))
			return v;
	}
	r->bad = 1;
	return 0;
}

static int64_t read_sleb(struct reader *r)
{
	int64_t v = 0;
	unsigned shift = 0;
	uint8_t b = 0;
	while (r->p < r->end) {
		b = *r->p++;
		if (shift < 64)
			v |= (int64_t)((uint64_t)(b & 0x7f) << shift);
		shift += 7;
		if (!(b & 0x80)) {
			if (shift < 64 && (b & 0x40))
				v |= -((int64_t)1 << shift);
			return v;
		}
	}
	r->bad = 1;
	return 0;
}

static uint64_t read_fixed(struct reader *r, unsigned n)
{
	uint64_t v = 0;
	if ((size_t)(r->end - r->p) < n) {
		r->bad = 1;
		return 0;
	}
	memcpy(&v, r->p, n); /* little endian */
	r->p += n;
	return v;
}

static uint8_t read_u8(struct reader *r)
{
	return (uint8_t)read_fixed(r, 1);
}

/* Reads a DW_EH_PE encoded pointer; datarel is relative to data_base. */
static uint64_t read_encoded(struct reader *r, uint8_t enc, uintptr_t data_base)
{
	uintptr_t at = (uintptr_t)r->p;
	uint64_t v;

	if (enc == PE_OMIT)
		return 0;
	switch (enc & PE_FMT) {
	case 0x00: v = read_fixed(r, 8); break;
	case 0x01: v = read_uleb(r); break;
	case 0x02: v = read_fixed(r, 2); break;
	case 0x03: v = read_fixed(r, 4); break;
	case 0x04: v = read_fixed(r, 8); break;
	case 0x09: v = (uint64_t)read_sleb(r); break;
	case 0x0a: v = (uint64_t)(int64_t)(int16_t)read_fixed(r, 2); break;
	case 0x0b: v = (uint64_t)(int64_t)(int32_t)read_fixed(r, 4); break;
	case 0x0c: v = read_fixed(r, 8); break;
	default: r->bad = 1; return 0;
	}
	switch (enc & PE_APP) {
	case 0x00: break;
	case PE_PCREL: v += at; break;
	case PE_DATAREL: v += data_base; break;
	default: r->bad = 1; return 0;
	}
	if (enc & PE_INDIRECT) /* only in personality pointers, which we skip */
		r->bad = 1;
	return v;
}

/* ---- the call frame program ---- */

enum { REG_SAME, REG_OFFSET, REG_UNDEFINED, REG_OTHER };

struct cfa_row {
	int cfa_reg;     /* DWARF register, or -1 for an expression */
	int64_t cfa_off;
	int rbp_how, ra_how; /* REG_* */
	int64_t rbp_off, ra_off;
};

struct cie {
	uint64_t code_align;
	int64_t data_align;
	uint64_t ra_reg;
	uint8_t fde_enc;
	int signal_frame, has_z;
	const uint8_t *insns, *insns_end;
};

#define STATE_STACK 8

static void set_reg(struct cfa_row *row, uint64_t reg, int how, int64_t off)
{
	if (reg == DW_RBP) {
		row->rbp_how = how;
		row->rbp_off = off;
	} else if (reg == DW_RA) {
		row->ra_how = how;
		row->ra_off = off;
	}
	/* Other registers: this walk never reads them (a CFA in one is FALLBACK). */
}

/* DW_CFA_restore: reg's rule back to what the CIE's instructions left. */
static void restore_reg(struct cfa_row *row, uint64_t reg, const struct cfa_row *initial)
{
	if (reg == DW_RBP) {
		row->rbp_how = initial->rbp_how;
		row->rbp_off = initial->rbp_off;
	} else if (reg == DW_RA) {
		row->ra_how = initial->ra_how;
		row->ra_off = initial->ra_off;
	}
}

/*
 * Runs insns up to the row that covers target (loc <= target), starting
 * at loc. initial is the row after the CIE's instructions (for restore).
 * Returns 0, or -1 for anything this walk does not understand.
 */
static int run_program(const struct cie *c, const uint8_t *p, const uint8_t *end, uint64_t loc,
		       uint64_t target, struct cfa_row *row, const struct cfa_row *initial)
{
	struct cfa_row saved[STATE_STACK];
	unsigned nsaved = 0;
	struct reader r = {p, end, 0};

	while (r.p < r.end && !r.bad) {
		uint8_t op = read_u8(&r);
		uint8_t hi = op & 0xc0, lo = op & 0x3f;
		uint64_t reg, delta;
		int64_t off;

		if (hi == 0x40) { /* DW_CFA_advance_loc */
			loc += lo * c->code_align;
			if (loc > target)
				return 0;
			continue;
		}
		if (hi == 0x80) { /* DW_CFA_offset */
			off = (int64_t)read_uleb(&r) * c->data_align;
			set_reg(row, lo, REG_OFFSET, off);
			continue;
		}
		if (hi == 0xc0) { /* DW_CFA_restore */
			restore_reg(row, lo, initial);
			continue;
		}
		switch (op) {
		case 0x00: /* nop */
			break;
		case 0x01: /* set_loc */
			loc = read_encoded(&r, c->fde_enc, 0);
			if (loc > target)
				return 0;
			break;
		case 0x02: /* advance_loc1 */
		case 0x03: /* advance_loc2 */
		case 0x04: /* advance_loc4 */
			delta = read_fixed(&r, op == 0x02 ? 1 : op == 0x03 ? 2 : 4);
			loc += delta * c->code_align;
			if (loc > target)
				return 0;
			break;
		case 0x05: /* offset_extended */
			reg = read_uleb(&r);
			off = (int64_t)read_uleb(&r) * c->data_align;
			set_reg(row, reg, REG_OFFSET, off);
			break;
		case 0x11: /* offset_extended_sf */
			reg = read_uleb(&r);
			off = read_sleb(&r) * c->data_align;
			set_reg(row, reg, REG_OFFSET, off);
			break;
		case 0x2f: /* GNU_negative_offset_extended */
			reg = read_uleb(&r);
			off = -(int64_t)read_uleb(&r) * c->data_align;
			set_reg(row, reg, REG_OFFSET, off);
			break;
		case 0x06: /* restore_extended */
			restore_reg(row, read_uleb(&r), initial);
			break;
		case 0x07: /* undefined */
			set_reg(row, read_uleb(&r), REG_UNDEFINED, 0);
			break;
		case 0x08: /* same_value */
			set_reg(row, read_uleb(&r), REG_SAME, 0);
			break;
		case 0x09: /* register: kept in another register */
		case 0x14: /* val_offset: the value is CFA + n, not saved */
			reg = read_uleb(&r);
			read_uleb(&r);
			set_reg(row, reg, REG_OTHER, 0);
			break;
		case 0x0a: /* remember_state */
			if (nsaved == STATE_STACK)
				return -1;
			saved[nsaved++] = *row;
			break;
		case 0x0b: /* restore_state: the CFA too, as libgcc and libunwind do */
			if (nsaved == 0)
				return -1;
			*row = saved[--nsaved];
			break;
		case 0x0c: /* def_cfa */
			row->cfa_reg = (int)read_uleb(&r);
			row->cfa_off = (int64_t)read_uleb(&r);
			break;
		case 0x12: /* def_cfa_sf */
			row->cfa_reg = (int)read_uleb(&r);
			row->cfa_off = read_sleb(&r) * c->data_align;
			break;
		case 0x0d: /* def_cfa_register */
			row->cfa_reg = (int)read_uleb(&r);
			break;
		case 0x0e: /* def_cfa_offset */
			row->cfa_off = (int64_t)read_uleb(&r);
			break;
		case 0x13: /* def_cfa_offset_sf */
			row->cfa_off = read_sleb(&r) * c->data_align;
			break;
		case 0x0f: /* def_cfa_expression */
			delta = read_uleb(&r);
			if ((uint64_t)(r.end - r.p) < delta)
				return -1;
			r.p += delta;
			row->cfa_reg = -1;
			break;
		case 0x10: /* expression */
		case 0x16: /* val_expression */
			reg = read_uleb(&r);
			delta = read_uleb(&r);
			if ((uint64_t)(r.end - r.p) < delta)
				return -1;
			r.p += delta;
			set_reg(row, reg, REG_OTHER, 0);
			break;
		case 0x15: /* val_offset_sf */
			reg = read_uleb(&r);
			read_sleb(&r);
			set_reg(row, reg, REG_OTHER, 0);
			break;
		case 0x2e: /* GNU_args_size */
			read_uleb(&r);
			break;
		default:
			return -1;
		}
	}
	return r.bad ? -1 : 0;
}

/* Parses the CIE at p (its length field). Returns 0 or -1. */
static int parse_cie(const uint8_t *p, struct cie *c)
{
	struct reader r = {p, p + 12, 0};
	uint64_t len = read_fixed(&r, 4);
	const char *aug;
	const uint8_t *aug_data_end = NULL;
	uint8_t version;

	if (len == 0 || len == 0xffffffffu)
		return -1; /* 64-bit DWARF: not emitted by GNU tools for .eh_frame */
	r.end = p + 4 + len;
	if (read_fixed(&r, 4) != 0) /* CIE id */
		return -1;
	version = read_u8(&r);
	if (version != 1 && version != 3)
		return -1;
	aug = (const char *)r.p;
	while (r.p < r.end && *r.p)
		r.p++;
	if (r.p >= r.end)
		return -1;
	r.p++;
	c->code_align = read_uleb(&r);
	c->data_align = read_sleb(&r);
	c->ra_reg = version == 1 ? read_u8(&r) : read_uleb(&r);
	c->fde_enc = 0; /* absptr */
	c->signal_frame = 0;
	c->has_z = aug[0] == 'z';
	for (const char *a = aug; *a && !r.bad; a++) {
		switch (*a) {
		case 'z': {
			uint64_t n = read_uleb(&r);
			if ((uint64_t)(r.end - r.p) < n)
				return -1;
			aug_data_end = r.p + n;
			break;
		}
		case 'R':
			c->fde_enc = read_u8(&r);
			break;
		case 'P': {
			uint8_t enc = read_u8(&r) & (uint8_t)~PE_INDIRECT;
			read_encoded(&r, enc, 0);
			break;
		}
		case 'L':
			read_u8(&r);
			break;
		case 'S':
			c->signal_frame = 1;
			break;
		default: /* an augmentation we do not know: skip the data if we can */
			if (!aug_data_end)
				return -1;
			r.p = aug_data_end;
			a += strlen(a) - 1;
			break;
		}
	}
	if (r.bad)
		return -1;
	if (aug_data_end)
		r.p = aug_data_end;
	c->insns = r.p;
	c->insns_end = r.end;
	return 0;
}

/*
 * The rule of a return address its object has no FDE for: the loader's
 * start code, which runs the libraries' constructors (libselinux's
 * allocates in every program that links it), has none. libunwind's step
 * then looks at the code at ra for a signal trampoline (mov $15,%rax;
 * syscall) and a PLT stub (jmp *x(%rip); push; jmp), else follows rbp as
 * a frame chain, ending the stack where rbp is 0. MS_RULE_NO_FDE is that
 * last case, the walk checking rbp; the others (and code bytes that
 * cannot be read within ra's page, mapped since ra - 1 is the call) fall
 * back to libunwind.
 */
static uint64_t no_fde_rule(uintptr_t ra)
{
	uint64_t w0, w1;

	if (((ra - 1) & ~(uintptr_t)4095) != ((ra + 15) & ~(uintptr_t)4095))
		return MS_RULE_FALLBACK;
	memcpy(&w0, (const void *)ra, 8);
	memcpy(&w1, (const void *)(ra + 8), 8);
	if (w0 == 0x0f0000000fc0c748ull && (w1 & 0xff) == 0x05)
		return MS_RULE_FALLBACK; /* rt_sigreturn */
	if ((w0 & 0xffff) == 0x25ff && ((w0 >> 48) & 0xff) == 0x68 && ((w1 >> 24) & 0xff) == 0xe9)
		return MS_RULE_FALLBACK; /* a PLT stub */
	return MS_RULE_NO_FDE;
}

/*
 * Finds the FDE that may cover pc through the .eh_frame_hdr search table:
 * the last one starting at or below pc (the caller checks its range).
 * Returns its address, or NULL: with *unreadable set when the table is
 * not one this code reads, else because no FDE starts at or below pc.
 */
static const uint8_t *find_fde(const uint8_t *hdr, uintptr_t pc, int *unreadable)
{
	struct reader r = {hdr, hdr + 4 + 8 + 8, 0};
	uint8_t version = read_u8(&r), frame_enc = read_u8(&r), count_enc = read_u8(&r),
		table_enc = read_u8(&r);
	uint64_t count;
	const int32_t *table;
	uint64_t lo = 0, hi;

	*unreadable = 1;
	if (version != 1 || table_enc != 0x3b) /* datarel | sdata4: what ld writes */
		return NULL;
	read_encoded(&r, frame_enc, (uintptr_t)hdr);
	count = read_encoded(&r, count_enc, (uintptr_t)hdr);
	if (r.bad || count == 0)
		return NULL;
	*unreadable = 0;
	table = (const int32_t *)r.p;
	hi = count;
	/* The last entry whose initial location is <= pc. */
	while (hi - lo > 1) {
		uint64_t mid = lo + (hi - lo) / 2;
		if ((uintptr_t)hdr + (intptr_t)table[2 * mid] <= pc)
			lo = mid;
		else
			hi = mid;
	}
	if ((uintptr_t)hdr + (intptr_t)table[2 * lo] > pc)
		return NULL;
	return hdr + (intptr_t)table[2 * lo + 1];
}

/* The rule for return address ra, computed from the CFI of obj, the object holding ra - 1. */
static uint64_t compute_rule(uintptr_t ra, const struct dl_find_object *o)
{
	const uint8_t *fde;
	struct cie c;
	struct reader r;
	uint64_t len, pc_begin, pc_range;
	uintptr_t pc = ra - 1; /* the call instruction */
	struct cfa_row row = {DW_RSP, 8, REG_SAME, REG_UNDEFINED, 0, 0}, initial;
	int64_t cie_off;
	int unreadable;

	fde = find_fde(o->dlfo_eh_frame, pc, &unreadable);
	if (!fde)
		return unreadable ? MS_RULE_FALLBACK : no_fde_rule(ra);
	r = (struct reader){fde, fde + 8, 0};
	len = read_fixed(&r, 4);
	if (len == 0 || len == 0xffffffffu)
		return MS_RULE_FALLBACK;
	cie_off = (int64_t)read_fixed(&r, 4);
	if (cie_off == 0 || parse_cie(fde + 4 - cie_off, &c) != 0 || c.signal_frame ||
	    c.ra_reg != DW_RA)
		return MS_RULE_FALLBACK;
	r.end = fde + 4 + len;
	pc_begin = read_encoded(&r, c.fde_enc, 0);
	pc_range = read_encoded(&r, c.fde_enc & PE_FMT, 0);
	if (r.bad)
		return MS_RULE_FALLBACK;
	if (pc < pc_begin || pc - pc_begin >= pc_range)
		return no_fde_rule(ra); /* between two functions' FDEs */
	if (c.has_z) {
		uint64_t n = read_uleb(&r);
		if (r.bad || (uint64_t)(r.end - r.p) < n)
			return MS_RULE_FALLBACK;
		r.p += n;
	}
	if (run_program(&c, c.insns, c.insns_end, pc_begin, pc, &row, &row) != 0)
		return MS_RULE_FALLBACK;
	initial = row;
	if (run_program(&c, r.p, r.end, pc_begin, pc, &row, &initial) != 0)
		return MS_RULE_FALLBACK;

	if (row.ra_how == REG_UNDEFINED)
		return MS_RULE_END;
	if (row.ra_how != REG_OFFSET || row.ra_off != -8)
		return MS_RULE_FALLBACK;
	if ((row.cfa_reg != DW_RSP && row.cfa_reg != DW_RBP) || row.cfa_off <= 0 ||
	    row.cfa_off > INT32_MAX)
		return MS_RULE_FALLBACK;
	uint64_t rule = (uint64_t)(uint32_t)row.cfa_off;
	if (row.cfa_reg == DW_RBP)
		rule |= MS_RULE_CFA_RBP;
	if (row.rbp_how == REG_OFFSET) {
		if (row.rbp_off >= 0 || row.rbp_off < INT16_MIN || (row.rbp_off & 7))
			return MS_RULE_FALLBACK;
		rule |= (uint64_t)(uint16_t)(int16_t)row.rbp_off << 32;
	} else if (row.rbp_how != REG_SAME) {
		return MS_RULE_FALLBACK;
	}
	return rule;
}

/*
 * The rule for return address ra (without its generation): from the
 * session's file of rules of ra's object (rulecache.c) when it has it,
 * else computed from the object's CFI.
 */
static uint64_t compile_rule(uintptr_t ra, uint32_t gen)
{
	struct dl_find_object obj;
	struct ms_rulefile *f;
	uint64_t rule;

	if (_dl_find_object((void *)(ra - 1), &obj) != 0 || !obj.dlfo_eh_frame)
		return MS_RULE_FALLBACK;
	f = ms_rulefile_of(&obj, gen);
	if (f && (rule = ms_rulefile_rule(f, ra)) != 0)
		return rule;
	rule = compute_rule(ra, &obj);
	if (f)
		ms_rulefile_compiled(f);
	return rule;
}

/* The regions index by the low bits: those of the product's upper half. */
static inline uint64_t hash_ra(uintptr_t ra)
{
	return ((uint64_t)ra * 0x9e3779b97f4a7c15ull) >> 32;
}

uint64_t ms_cfi_rule(uintptr_t ra)
{
	uint32_t gen = __atomic_load_n(&code_gen, __ATOMIC_ACQUIRE);
	struct ms_slot *s;
	uint64_t rule;

	if (!gen || !rules.base || !ra) /* no table: every stack goes to libunwind */
		return MS_RULE_FALLBACK;
	s = ms_slots_get(&rules, (uint64_t)ra, hash_ra(ra));
	if (s) {
		rule = __atomic_load_n(&s->value, __ATOMIC_ACQUIRE);
		if (rule && MS_RULE_GEN(rule) == gen) /* C2, C3 */
			return rule;
	}
	rule = compile_rule(ra, gen) | (uint64_t)gen << MS_RULE_GEN_SHIFT;
	if (s)
		__atomic_store_n(&s->value, rule, __ATOMIC_RELEASE);
	return rule;
}

void ms_cfi_each_rule(void (*fn)(uint64_t ra, uint64_t rule, void *arg), void *arg)
{
	ms_slots_each(&rules, fn, arg);
}
