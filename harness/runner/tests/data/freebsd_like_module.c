/*
 * A FreeBSD-module-like object for testing `kmod verify` without FreeBSD's headers: a
 * SYSINIT-style linker set and a module metadata set, referenced through the
 * __start_set_* / __stop_set_* symbols the linker creates, as <sys/linker_set.h> does.
 */
struct sysinit {
	unsigned subsystem, order;
	void (*func)(const void *);
	const void *udata;
};
struct mod_metadata {
	int version, type;
	const void *data;
	const char *name;
};

static void addrsel_init(const void *arg) { (void)arg; }
static const struct sysinit addrsel_sysinit = { 0x8000000, 0, addrsel_init, 0 };
static const struct mod_metadata addrsel_md = { 1, 1, 0, "addrsel" };

__attribute__((section("set_sysinit_set"), used)) static const void *const __set_sysinit_set_sym = &addrsel_sysinit;
__attribute__((section("set_modmetadata_set"), used)) static const void *const __set_modmetadata_set_sym = &addrsel_md;

extern const void *__start_set_sysinit_set[] __attribute__((weak));
extern const void *__stop_set_sysinit_set[] __attribute__((weak));
extern const void *__start_set_modmetadata_set[] __attribute__((weak));
extern const void *__stop_set_modmetadata_set[] __attribute__((weak));

const void *addrsel_sets(void)
{
	return __start_set_sysinit_set + (__stop_set_sysinit_set - __start_set_sysinit_set) +
	       (__stop_set_modmetadata_set - __start_set_modmetadata_set);
}
