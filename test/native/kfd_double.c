/*
 * kfd_double: a C TEST DOUBLE of /dev/kfd, built as a shared library at test time
 * (test/native/compile.ts) and loaded by the binding through the same bun:ffi path as libc
 * (runtime/ffi/libc.ts with the kfd_double_* symbol names). It is not a driver and never
 * touches hardware.
 *
 * What it does, like the kernel (drivers/gpu/drm/amd/amdkfd/kfd_chardev.c, kfd_svm.c,
 * kfd_smi_events.c):
 * - decodes every request with the structs of the system's <linux/kfd_ioctl.h>;
 * - dereferences user pointers (device_ids_array_ptr, apertures ptr, the attrs[] that follow
 *   kfd_ioctl_svm_args) as the kernel's copy_from_user would; a NULL pointer is EFAULT;
 * - validates as the kernel does: unknown gpu_id, unknown handle, unknown SVM attribute type or
 *   op, misaligned or zero SVM start/size -> EINVAL; freeing mapped memory -> EBUSY;
 * - keeps state: allocations and handles, per-GPU mapping of each handle, SVM attributes per
 *   range (split at the edges of each SET_ATTR, never merged), XNACK mode, SMI clients;
 * - fails as its failure script says (kfd_double_script): device k fails with an errno, EINTR
 *   after k devices, any ioctl or open fails with an errno;
 * - returns -1 and sets errno on failure, as libc does.
 * Stricter than the kernel: a request number that differs from the header's (wrong direction
 * or size) is ENOTTY, so a binding that encodes numbers wrongly fails the tests.
 */
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <linux/kfd_ioctl.h>

#define EXPORT __attribute__((visibility("default")))

/* fd numbers the double hands out: far above what the test process uses. */
#define DOUBLE_KFD_FD 0x4b00
#define DOUBLE_SMI_FD_BASE 0x4b10

#define GPUS_MAX 16
#define ALLOCS_MAX 1024
#define RANGES_MAX 4096
#define SVM_NATTR_MAX 1024
#define SMI_CLIENTS_MAX 16
/* The kernel's per-client kfifo (MAX_KFIFO_SIZE in kfd_smi_events.c); full -> events dropped. */
#define SMI_FIFO_BYTES 1024
#define SCRIPTS_MAX 8
#define PAGE_SIZE_BYTES 4096ULL
#define PAGE_SHIFT 12
#define GPU_VRAM_BYTES (64ULL << 30)
#define SVM_GRANULARITY_DEFAULT 9
#define SVM_GRANULARITY_MAX 0x3f

struct double_alloc {
	int live;
	uint64_t handle;
	uint64_t va_addr;
	uint64_t size;
	uint32_t gpu_id;
	uint32_t flags;
	uint8_t mapped[GPUS_MAX];
	uint32_t map_requests[GPUS_MAX];
};

struct double_range {
	uint64_t start, last; /* pages, inclusive */
	uint32_t preferred_loc, prefetch_loc, flags, granularity;
	uint32_t access, aip; /* bit i: gpu index i */
};

struct double_smi_client {
	int open;
	uint32_t gpu_id;
	uint64_t events;
	uint8_t fifo[SMI_FIFO_BYTES];
	uint32_t len;
	uint32_t dropped;
};

enum script_kind {
	SCRIPT_DEVICE_FAILS = 1, /* map/unmap (nr) of array index k fails with err */
	SCRIPT_EINTR_AFTER = 2,  /* map/unmap (nr) returns EINTR after k devices of this call */
	SCRIPT_IOCTL_FAILS = 3,  /* ioctl nr fails with err before doing anything */
	SCRIPT_OPEN_FAILS = 4,   /* open fails with err */
};

struct double_script {
	uint32_t kind, nr, k;
	int32_t err;
	uint32_t times; /* remaining; 0xffffffff = forever */
};

static struct {
	uint32_t version_minor;
	uint32_t n_gpus;
	uint32_t gpu_ids[GPUS_MAX];
	uint64_t vram_used[GPUS_MAX];
	int32_t drm_fds[GPUS_MAX];
	int kfd_open;
	int32_t xnack;
	struct double_alloc allocs[ALLOCS_MAX];
	uint32_t n_ranges;
	struct double_range ranges[RANGES_MAX];
	struct double_smi_client smi[SMI_CLIENTS_MAX];
	uint32_t smi_read_limit;
	struct double_script scripts[SCRIPTS_MAX];
	uint64_t ioctl_calls;
} st;

static int fail(int err) {
	errno = err;
	return -1;
}

/* ---- configuration and inspection (for tests) ---------------------------------------------- */

/* gpu_id of GPU index i: 0x1000 + 0x111 * i, never 0 (0 means system memory). */
static uint32_t gpu_id_of_index(uint32_t i) { return 0x1000 + 0x111 * i; }

EXPORT int kfd_double_reset(uint32_t n_gpus, uint32_t version_minor) {
	if (n_gpus > GPUS_MAX) return fail(EINVAL);
	memset(&st, 0, sizeof(st));
	st.n_gpus = n_gpus;
	st.version_minor = version_minor;
	for (uint32_t i = 0; i < n_gpus; i++) {
		st.gpu_ids[i] = gpu_id_of_index(i);
		st.drm_fds[i] = -1;
	}
	return 0;
}

EXPORT uint32_t kfd_double_gpu_id(uint32_t index) { return index < st.n_gpus ? st.gpu_ids[index] : 0; }

EXPORT int kfd_double_script(uint32_t kind, uint32_t nr, uint32_t k, int32_t err, uint32_t times) {
	for (int i = 0; i < SCRIPTS_MAX; i++) {
		if (st.scripts[i].times == 0) {
			st.scripts[i] = (struct double_script){kind, nr, k, err, times};
			return 0;
		}
	}
	return fail(ENOSPC);
}

EXPORT void kfd_double_script_clear(void) { memset(st.scripts, 0, sizeof(st.scripts)); }

static int gpu_index(uint32_t gpu_id) {
	for (uint32_t i = 0; i < st.n_gpus; i++)
		if (st.gpu_ids[i] == gpu_id) return (int)i;
	return -1;
}

static struct double_alloc *alloc_find(uint64_t handle) {
	uint64_t slot = (handle & 0xffffffffULL);
	if (slot == 0 || slot > ALLOCS_MAX) return NULL;
	struct double_alloc *a = &st.allocs[slot - 1];
	return a->live && a->handle == handle ? a : NULL;
}

/* 1 when `handle` is mapped on gpu_id, 0 when not, -1 when either is unknown. */
EXPORT int kfd_double_is_mapped(uint64_t handle, uint32_t gpu_id) {
	struct double_alloc *a = alloc_find(handle);
	int g = gpu_index(gpu_id);
	if (!a || g < 0) return -1;
	return a->mapped[g];
}

/* How many ioctls asked to map `handle` on gpu_id (an already mapped device counts too). */
EXPORT int kfd_double_map_requests(uint64_t handle, uint32_t gpu_id) {
	struct double_alloc *a = alloc_find(handle);
	int g = gpu_index(gpu_id);
	if (!a || g < 0) return -1;
	return (int)a->map_requests[g];
}

EXPORT uint32_t kfd_double_range_count(void) { return st.n_ranges; }
EXPORT uint64_t kfd_double_ioctl_calls(void) { return st.ioctl_calls; }

/* Events dropped on a full fifo, summed over the clients of gpu_id. */
EXPORT uint32_t kfd_double_smi_dropped(uint32_t gpu_id) {
	uint32_t n = 0;
	for (int i = 0; i < SMI_CLIENTS_MAX; i++)
		if (st.smi[i].open && st.smi[i].gpu_id == gpu_id) n += st.smi[i].dropped;
	return n;
}

/* At most this many bytes per read (0 = no limit): tears records across reads. */
EXPORT void kfd_double_smi_read_limit(uint32_t max_bytes) { st.smi_read_limit = max_bytes; }

static void smi_client_push(struct double_smi_client *c, const uint8_t *bytes, uint32_t len) {
	if (SMI_FIFO_BYTES - c->len < len) {
		c->dropped++; /* kernel: "no space left", the event is dropped silently */
		return;
	}
	memcpy(c->fifo + c->len, bytes, len);
	c->len += len;
}

/*
 * Deliver bytes to every SMI client of gpu_id. filter = 1: `bytes` is one record whose
 * leading hex id must be enabled in the client's mask (as kfd_smi_event_add does);
 * filter = 0: raw bytes, delivered as they are (torn or overlong records for parser tests).
 * Returns the number of clients that received them.
 */
EXPORT int kfd_double_smi_push(uint32_t gpu_id, const uint8_t *bytes, uint32_t len, int filter) {
	uint32_t event = 0;
	if (filter) {
		for (uint32_t i = 0; i < len && bytes[i] != ' '; i++) {
			uint8_t ch = bytes[i];
			uint32_t d = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : 99;
			if (d == 99 || event > 64) return fail(EINVAL);
			event = event * 16 + d;
		}
		if (event < 1 || event > 64) return fail(EINVAL);
	}
	int n = 0;
	for (int i = 0; i < SMI_CLIENTS_MAX; i++) {
		struct double_smi_client *c = &st.smi[i];
		if (!c->open || c->gpu_id != gpu_id) continue;
		if (filter && !(c->events & (1ULL << (event - 1)))) continue;
		smi_client_push(c, bytes, len);
		n++;
	}
	return n;
}

/* The mask the SMI client on fd last wrote, or 0. */
EXPORT uint64_t kfd_double_smi_mask(int fd) {
	int i = fd - DOUBLE_SMI_FD_BASE;
	if (i < 0 || i >= SMI_CLIENTS_MAX || !st.smi[i].open) return 0;
	return st.smi[i].events;
}

/* ---- failure script ----------------------------------------------------------------------- */

static struct double_script *script_match(uint32_t kind, uint32_t nr) {
	for (int i = 0; i < SCRIPTS_MAX; i++) {
		struct double_script *s = &st.scripts[i];
		if (s->times && s->kind == kind && s->nr == nr) return s;
	}
	return NULL;
}

static void script_consume(struct double_script *s) {
	if (s->times != 0xffffffffu) s->times--;
}

/* ---- libc-compatible entry points ----------------------------------------------------------- */

EXPORT int kfd_double_open(const char *path, int flags) {
	(void)flags;
	struct double_script *s = script_match(SCRIPT_OPEN_FAILS, 0);
	if (s) {
		script_consume(s);
		return fail(s->err);
	}
	if (!path || strcmp(path, "/dev/kfd") != 0) return fail(ENOENT);
	if (st.kfd_open) return fail(EBUSY); /* one KFD process context per double */
	st.kfd_open = 1;
	return DOUBLE_KFD_FD;
}

EXPORT int kfd_double_close(int fd) {
	if (fd == DOUBLE_KFD_FD && st.kfd_open) {
		st.kfd_open = 0;
		return 0;
	}
	int i = fd - DOUBLE_SMI_FD_BASE;
	if (i >= 0 && i < SMI_CLIENTS_MAX && st.smi[i].open) {
		memset(&st.smi[i], 0, sizeof(st.smi[i]));
		return 0;
	}
	return fail(EBADF);
}

static struct double_smi_client *smi_client(int fd) {
	int i = fd - DOUBLE_SMI_FD_BASE;
	if (i < 0 || i >= SMI_CLIENTS_MAX || !st.smi[i].open) return NULL;
	return &st.smi[i];
}

/* kfd_smi_ev_read: never blocks; empty -> EAGAIN; copies min(size, fifo length). */
EXPORT long kfd_double_read(int fd, void *buf, size_t size) {
	struct double_smi_client *c = smi_client(fd);
	if (!c) return fail(EBADF);
	if (!buf) return fail(EFAULT);
	if (c->len == 0) return fail(EAGAIN);
	uint32_t n = c->len < size ? c->len : (uint32_t)size;
	if (st.smi_read_limit && n > st.smi_read_limit) n = st.smi_read_limit;
	memcpy(buf, c->fifo, n);
	memmove(c->fifo, c->fifo + n, c->len - n);
	c->len -= n;
	return (long)n;
}

/* kfd_smi_ev_write: exactly the 8-byte event mask. */
EXPORT long kfd_double_write(int fd, const void *buf, size_t size) {
	struct double_smi_client *c = smi_client(fd);
	if (!c) return fail(EBADF);
	if (size != sizeof(uint64_t)) return fail(EINVAL);
	if (!buf) return fail(EFAULT);
	memcpy(&c->events, buf, sizeof(uint64_t));
	return (long)sizeof(uint64_t);
}

EXPORT int kfd_double_poll(struct pollfd *fds, nfds_t nfds, int timeout_ms) {
	(void)timeout_ms; /* never blocks: the double's state cannot change while the caller waits */
	if (!fds && nfds) return fail(EFAULT);
	int ready = 0;
	for (nfds_t i = 0; i < nfds; i++) {
		fds[i].revents = 0;
		if (fds[i].fd < 0) continue;
		struct double_smi_client *c = smi_client(fds[i].fd);
		if (!c) {
			if (fds[i].fd != DOUBLE_KFD_FD) fds[i].revents = POLLNVAL;
		} else if (c->len && (fds[i].events & POLLIN)) {
			fds[i].revents = POLLIN;
		}
		if (fds[i].revents) ready++;
	}
	return ready;
}

/* ---- ioctls ------------------------------------------------------------------------------ */

static int ioctl_get_version(struct kfd_ioctl_get_version_args *a) {
	a->major_version = KFD_IOCTL_MAJOR_VERSION;
	a->minor_version = st.version_minor;
	return 0;
}

static int ioctl_get_process_apertures_new(struct kfd_ioctl_get_process_apertures_new_args *a) {
	if (a->num_of_nodes == 0) {
		a->num_of_nodes = st.n_gpus; /* kernel: a query of the count */
		return 0;
	}
	if (!a->kfd_process_device_apertures_ptr) return fail(EFAULT);
	struct kfd_process_device_apertures *pa =
		(struct kfd_process_device_apertures *)(uintptr_t)a->kfd_process_device_apertures_ptr;
	uint32_t n = a->num_of_nodes < st.n_gpus ? a->num_of_nodes : st.n_gpus;
	for (uint32_t i = 0; i < n; i++) {
		/* GFX9-style apertures (kfd_flat_memory.c); values of the double, not of a GPU. */
		memset(&pa[i], 0, sizeof(pa[i]));
		pa[i].lds_base = 0x1000000000000ULL;
		pa[i].lds_limit = 0x1000000000000ULL + 0xffffffffULL;
		pa[i].scratch_base = 0x2000000000000ULL;
		pa[i].scratch_limit = 0x2000000000000ULL + 0xffffffffULL;
		pa[i].gpuvm_base = 0x1000000ULL;
		pa[i].gpuvm_limit = 0x7fffffffffffULL;
		pa[i].gpu_id = st.gpu_ids[i];
	}
	a->num_of_nodes = n;
	return 0;
}

static int ioctl_acquire_vm(struct kfd_ioctl_acquire_vm_args *a) {
	int g = gpu_index(a->gpu_id);
	if (g < 0) return fail(EINVAL);
	if ((int32_t)a->drm_fd < 0) return fail(EINVAL); /* kernel: fget fails */
	if (st.drm_fds[g] >= 0) return st.drm_fds[g] == (int32_t)a->drm_fd ? 0 : fail(EBUSY);
	st.drm_fds[g] = (int32_t)a->drm_fd;
	return 0;
}

#define ALLOC_TYPE_MASK                                                                        \
	(KFD_IOC_ALLOC_MEM_FLAGS_VRAM | KFD_IOC_ALLOC_MEM_FLAGS_GTT | KFD_IOC_ALLOC_MEM_FLAGS_USERPTR | \
	 KFD_IOC_ALLOC_MEM_FLAGS_DOORBELL | KFD_IOC_ALLOC_MEM_FLAGS_MMIO_REMAP)

static int ioctl_alloc_memory_of_gpu(struct kfd_ioctl_alloc_memory_of_gpu_args *a) {
	int g = gpu_index(a->gpu_id);
	if (g < 0) return fail(EINVAL);
	uint32_t type = a->flags & ALLOC_TYPE_MASK;
	if (type == 0 || (type & (type - 1))) return fail(EINVAL); /* exactly one memory type */
	if (a->size == 0 || (a->size & (PAGE_SIZE_BYTES - 1)) || (a->va_addr & (PAGE_SIZE_BYTES - 1)))
		return fail(EINVAL);
	if ((type & KFD_IOC_ALLOC_MEM_FLAGS_VRAM) && a->size > GPU_VRAM_BYTES - st.vram_used[g])
		return fail(ENOMEM);
	for (uint32_t slot = 0; slot < ALLOCS_MAX; slot++) {
		struct double_alloc *m = &st.allocs[slot];
		if (m->live) continue;
		memset(m, 0, sizeof(*m));
		m->live = 1;
		/* kernel: MAKE_HANDLE(gpu_id, idr_handle) */
		m->handle = ((uint64_t)a->gpu_id << 32) | (slot + 1);
		m->va_addr = a->va_addr;
		m->size = a->size;
		m->gpu_id = a->gpu_id;
		m->flags = a->flags;
		if (type & KFD_IOC_ALLOC_MEM_FLAGS_VRAM) st.vram_used[g] += a->size;
		a->handle = m->handle;
		if (!(type & KFD_IOC_ALLOC_MEM_FLAGS_USERPTR)) a->mmap_offset = (uint64_t)(slot + 1) << PAGE_SHIFT;
		return 0;
	}
	return fail(ENOMEM);
}

static int ioctl_free_memory_of_gpu(struct kfd_ioctl_free_memory_of_gpu_args *a) {
	struct double_alloc *m = alloc_find(a->handle);
	if (!m) return fail(EINVAL);
	for (uint32_t i = 0; i < st.n_gpus; i++)
		if (m->mapped[i]) return fail(EBUSY); /* amdgpu_amdkfd_gpuvm_free_memory_of_gpu */
	if (m->flags & KFD_IOC_ALLOC_MEM_FLAGS_VRAM) st.vram_used[gpu_index(m->gpu_id)] -= m->size;
	m->live = 0;
	return 0;
}

/* MAP (map = 1) and UNMAP (map = 0) share the n_success protocol of kfd_chardev.c. */
static int ioctl_map_unmap(struct kfd_ioctl_map_memory_to_gpu_args *a, int map, uint32_t nr) {
	struct double_alloc *m = alloc_find(a->handle);
	if (!a->n_devices) return fail(EINVAL);
	if (a->n_success > a->n_devices) return fail(EINVAL);
	if (a->n_devices > GPUS_MAX) return fail(EINVAL);
	if (!a->device_ids_array_ptr) return fail(EFAULT); /* copy_from_user */
	const uint32_t *ids = (const uint32_t *)(uintptr_t)a->device_ids_array_ptr;
	if (!m) return fail(EINVAL);
	uint32_t done_this_call = 0;
	for (uint32_t i = a->n_success; i < a->n_devices; i++) {
		struct double_script *s = script_match(SCRIPT_EINTR_AFTER, nr);
		if (s && done_this_call >= s->k) {
			script_consume(s);
			return fail(EINTR); /* -ERESTARTSYS seen by a handler that does not restart */
		}
		int g = gpu_index(ids[i]);
		if (g < 0) return fail(EINVAL);
		s = script_match(SCRIPT_DEVICE_FAILS, nr);
		if (s && s->k == i) {
			script_consume(s);
			return fail(s->err);
		}
		if (map) {
			m->map_requests[g]++;
			m->mapped[g] = 1; /* already mapped: skipped, as the kernel does */
		} else {
			if (!m->mapped[g]) return fail(EINVAL); /* kernel: not mapped on this VM */
			m->mapped[g] = 0;
		}
		a->n_success = i + 1;
		done_this_call++;
	}
	return 0;
}

/* ---- SVM attributes per range ----------------------------------------------------------- */

static int svm_attr_check(const struct kfd_ioctl_svm_attribute *attrs, uint32_t nattr) {
	for (uint32_t i = 0; i < nattr; i++) {
		uint32_t v = attrs[i].value;
		switch (attrs[i].type) {
		case KFD_IOCTL_SVM_ATTR_PREFERRED_LOC:
			if (v != KFD_IOCTL_SVM_LOCATION_SYSMEM && v != KFD_IOCTL_SVM_LOCATION_UNDEFINED &&
			    gpu_index(v) < 0)
				return fail(EINVAL);
			break;
		case KFD_IOCTL_SVM_ATTR_PREFETCH_LOC: /* only PREFERRED_LOC may be UNDEFINED */
			if (v != KFD_IOCTL_SVM_LOCATION_SYSMEM && gpu_index(v) < 0) return fail(EINVAL);
			break;
		case KFD_IOCTL_SVM_ATTR_ACCESS:
		case KFD_IOCTL_SVM_ATTR_ACCESS_IN_PLACE:
		case KFD_IOCTL_SVM_ATTR_NO_ACCESS:
			if (gpu_index(v) < 0) return fail(EINVAL);
			break;
		case KFD_IOCTL_SVM_ATTR_SET_FLAGS:
		case KFD_IOCTL_SVM_ATTR_CLR_FLAGS:
		case KFD_IOCTL_SVM_ATTR_GRANULARITY:
			break;
		default:
			return fail(EINVAL); /* unknown attribute type */
		}
	}
	return 0;
}

static void svm_range_apply(struct double_range *r, const struct kfd_ioctl_svm_attribute *attrs, uint32_t nattr) {
	for (uint32_t i = 0; i < nattr; i++) {
		uint32_t v = attrs[i].value;
		int g = gpu_index(v);
		switch (attrs[i].type) {
		case KFD_IOCTL_SVM_ATTR_PREFERRED_LOC: r->preferred_loc = v; break;
		case KFD_IOCTL_SVM_ATTR_PREFETCH_LOC: r->prefetch_loc = v; break;
		case KFD_IOCTL_SVM_ATTR_ACCESS: r->access |= 1u << g; r->aip &= ~(1u << g); break;
		case KFD_IOCTL_SVM_ATTR_ACCESS_IN_PLACE: r->aip |= 1u << g; r->access &= ~(1u << g); break;
		case KFD_IOCTL_SVM_ATTR_NO_ACCESS: r->access &= ~(1u << g); r->aip &= ~(1u << g); break;
		case KFD_IOCTL_SVM_ATTR_SET_FLAGS: r->flags |= v; break;
		case KFD_IOCTL_SVM_ATTR_CLR_FLAGS: r->flags &= ~v; break;
		case KFD_IOCTL_SVM_ATTR_GRANULARITY: r->granularity = v > SVM_GRANULARITY_MAX ? SVM_GRANULARITY_MAX : v; break;
		}
	}
}

static struct double_range svm_range_default(uint64_t start, uint64_t last) {
	struct double_range r = {start, last, KFD_IOCTL_SVM_LOCATION_UNDEFINED, KFD_IOCTL_SVM_LOCATION_UNDEFINED,
	                         KFD_IOCTL_SVM_FLAG_HOST_ACCESS | KFD_IOCTL_SVM_FLAG_COHERENT, SVM_GRANULARITY_DEFAULT,
	                         0, 0};
	if (st.xnack) r.access = (1u << st.n_gpus) - 1; /* XNACK on: every GPU of the process */
	return r;
}

/* Index of the first range whose last >= page (ranges sorted, disjoint). */
static uint32_t svm_range_lower(uint64_t page) {
	uint32_t lo = 0, hi = st.n_ranges;
	while (lo < hi) {
		uint32_t mid = (lo + hi) / 2;
		if (st.ranges[mid].last < page) lo = mid + 1;
		else hi = mid;
	}
	return lo;
}

static int svm_range_insert(uint32_t at, struct double_range r) {
	if (st.n_ranges >= RANGES_MAX) return fail(ENOMEM);
	memmove(&st.ranges[at + 1], &st.ranges[at], (st.n_ranges - at) * sizeof(r));
	st.ranges[at] = r;
	st.n_ranges++;
	return 0;
}

static int svm_set_attr(uint64_t start, uint64_t last, const struct kfd_ioctl_svm_attribute *attrs, uint32_t nattr) {
	/* Split the ranges straddling the interval's edges; head and tail keep their attributes. */
	uint32_t i = svm_range_lower(start);
	if (i < st.n_ranges && st.ranges[i].start < start) {
		struct double_range head = st.ranges[i];
		head.last = start - 1;
		st.ranges[i].start = start;
		if (svm_range_insert(i, head)) return -1;
	}
	i = svm_range_lower(last);
	if (i < st.n_ranges && st.ranges[i].start <= last && st.ranges[i].last > last) {
		struct double_range tail = st.ranges[i];
		tail.start = last + 1;
		st.ranges[i].last = last;
		if (svm_range_insert(i + 1, tail)) return -1;
	}
	/* Fill the gaps with new default ranges, then apply the attributes to every range inside. */
	uint64_t page = start;
	i = svm_range_lower(start);
	while (page <= last) {
		if (i < st.n_ranges && st.ranges[i].start == page) {
			svm_range_apply(&st.ranges[i], attrs, nattr);
			page = st.ranges[i].last + 1;
			i++;
			if (page == 0) break; /* wrapped at the top of the address space */
			continue;
		}
		uint64_t gap_last = i < st.n_ranges && st.ranges[i].start <= last ? st.ranges[i].start - 1 : last;
		struct double_range r = svm_range_default(page, gap_last);
		svm_range_apply(&r, attrs, nattr);
		if (svm_range_insert(i, r)) return -1;
		page = gap_last + 1;
		i++;
	}
	return 0;
}

static int svm_get_attr(uint64_t start, uint64_t last, struct kfd_ioctl_svm_attribute *attrs, uint32_t nattr) {
	/* kfd_svm.c svm_range_get_attr: only these types are queries (an ACCESS query's answer
	 * type says ACCESS, ACCESS_IN_PLACE or NO_ACCESS); query values are outputs. */
	for (uint32_t k = 0; k < nattr; k++) {
		switch (attrs[k].type) {
		case KFD_IOCTL_SVM_ATTR_PREFERRED_LOC:
		case KFD_IOCTL_SVM_ATTR_PREFETCH_LOC:
		case KFD_IOCTL_SVM_ATTR_ACCESS:
		case KFD_IOCTL_SVM_ATTR_SET_FLAGS:
		case KFD_IOCTL_SVM_ATTR_CLR_FLAGS:
		case KFD_IOCTL_SVM_ATTR_GRANULARITY:
			break;
		default:
			return fail(EINVAL);
		}
	}
	uint32_t i = svm_range_lower(start);
	int found = i < st.n_ranges && st.ranges[i].start <= last;
	uint32_t preferred = KFD_IOCTL_SVM_LOCATION_UNDEFINED, prefetch = KFD_IOCTL_SVM_LOCATION_UNDEFINED;
	uint32_t flags_and = 0xffffffffu, flags_or = 0, granularity = 0xff, access = 0xffffffffu, aip = 0xffffffffu;
	if (!found) {
		/* kfd_svm.c svm_range_get_attr: no range in the interval reports the defaults */
		struct double_range d = svm_range_default(start, last);
		flags_and = flags_or = d.flags;
		granularity = d.granularity;
		access = d.access;
		aip = 0;
	} else {
		int first = 1;
		for (; i < st.n_ranges && st.ranges[i].start <= last; i++) {
			struct double_range *r = &st.ranges[i];
			if (first) {
				preferred = r->preferred_loc;
				prefetch = r->prefetch_loc;
				first = 0;
			} else {
				if (preferred != r->preferred_loc) preferred = KFD_IOCTL_SVM_LOCATION_UNDEFINED;
				if (prefetch != r->prefetch_loc) prefetch = KFD_IOCTL_SVM_LOCATION_UNDEFINED;
			}
			flags_and &= r->flags;
			flags_or |= r->flags;
			if (r->granularity < granularity) granularity = r->granularity;
			access &= r->access;
			aip &= r->aip;
		}
	}
	for (uint32_t k = 0; k < nattr; k++) {
		int g;
		switch (attrs[k].type) {
		case KFD_IOCTL_SVM_ATTR_PREFERRED_LOC: attrs[k].value = preferred; break;
		case KFD_IOCTL_SVM_ATTR_PREFETCH_LOC: attrs[k].value = prefetch; break;
		case KFD_IOCTL_SVM_ATTR_ACCESS:
			g = gpu_index(attrs[k].value);
			if (g < 0) return fail(EINVAL); /* "invalid gpuid" */
			attrs[k].type = access & (1u << g)  ? KFD_IOCTL_SVM_ATTR_ACCESS
			                : aip & (1u << g) ? KFD_IOCTL_SVM_ATTR_ACCESS_IN_PLACE
			                                  : KFD_IOCTL_SVM_ATTR_NO_ACCESS;
			break;
		case KFD_IOCTL_SVM_ATTR_SET_FLAGS: attrs[k].value = flags_and; break;
		case KFD_IOCTL_SVM_ATTR_CLR_FLAGS: attrs[k].value = ~flags_or; break;
		case KFD_IOCTL_SVM_ATTR_GRANULARITY: attrs[k].value = granularity; break;
		}
	}
	return 0;
}

/* usize: the request's _IOC_SIZE, which counts attrs[] (user space adds it to AMDKFD_IOC_SVM) */
static int ioctl_svm(struct kfd_ioctl_svm_args *a, uint32_t usize) {
	if ((a->start_addr & (PAGE_SIZE_BYTES - 1)) || (a->size & (PAGE_SIZE_BYTES - 1))) return fail(EINVAL);
	if (!a->start_addr || !a->size) return fail(EINVAL);
	if (a->nattr > SVM_NATTR_MAX) return fail(EINVAL);
	uint64_t start = a->start_addr >> PAGE_SHIFT;
	uint64_t last = start + (a->size >> PAGE_SHIFT) - 1;
	if (last < start) return fail(EINVAL);
	/* kfd_ioctl's nattr check: the declared size must hold attrs[] */
	if (usize < sizeof(*a) + (uint64_t)a->nattr * sizeof(a->attrs[0])) return fail(EINVAL);
	/* attrs[] follows the fixed part in the caller's buffer */
	switch (a->op) {
	case KFD_IOCTL_SVM_OP_SET_ATTR:
		if (svm_attr_check(a->attrs, a->nattr)) return -1;
		return svm_set_attr(start, last, a->attrs, a->nattr);
	case KFD_IOCTL_SVM_OP_GET_ATTR: return svm_get_attr(start, last, a->attrs, a->nattr);
	/* svm_ioctl: `default: r = -EINVAL;` (positive in kernels before the 2025 sign fix) */
	default: return fail(EINVAL);
	}
}

static int ioctl_smi_events(struct kfd_ioctl_smi_events_args *a) {
	if (gpu_index(a->gpuid) < 0) return fail(EINVAL);
	for (int i = 0; i < SMI_CLIENTS_MAX; i++) {
		if (st.smi[i].open) continue;
		memset(&st.smi[i], 0, sizeof(st.smi[i]));
		st.smi[i].open = 1;
		st.smi[i].gpu_id = a->gpuid;
		a->anon_fd = (uint32_t)(DOUBLE_SMI_FD_BASE + i);
		return 0;
	}
	return fail(EMFILE);
}

static int ioctl_set_xnack_mode(struct kfd_ioctl_set_xnack_mode_args *a) {
	if (a->xnack_enabled >= 0) st.xnack = a->xnack_enabled ? 1 : 0; /* no queues in the double */
	a->xnack_enabled = st.xnack;
	return 0;
}

static int ioctl_available_memory(struct kfd_ioctl_get_available_memory_args *a) {
	int g = gpu_index(a->gpu_id);
	if (g < 0) return fail(EINVAL);
	a->available = GPU_VRAM_BYTES - st.vram_used[g];
	return 0;
}

struct ioctl_desc {
	unsigned long request;
	uint32_t since_minor;
};

static uint32_t request_since_minor(unsigned long request, int *known) {
	static const struct ioctl_desc table[] = {
		{AMDKFD_IOC_GET_VERSION, 0},         {AMDKFD_IOC_GET_PROCESS_APERTURES_NEW, 1},
		{AMDKFD_IOC_ACQUIRE_VM, 1},          {AMDKFD_IOC_ALLOC_MEMORY_OF_GPU, 1},
		{AMDKFD_IOC_FREE_MEMORY_OF_GPU, 1},  {AMDKFD_IOC_MAP_MEMORY_TO_GPU, 1},
		{AMDKFD_IOC_UNMAP_MEMORY_FROM_GPU, 1}, {AMDKFD_IOC_SMI_EVENTS, 3},
		{AMDKFD_IOC_SVM, 5},                 {AMDKFD_IOC_SET_XNACK_MODE, 5},
		{AMDKFD_IOC_AVAILABLE_MEMORY, 9},
	};
	for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
		if (table[i].request == request) {
			*known = 1;
			return table[i].since_minor;
		}
	}
	*known = 0;
	return 0;
}

/* An SVM request of any size (its size field counts attrs[]): its size, else 0. */
static uint32_t svm_request_size(unsigned long request) {
	unsigned long mask = (unsigned long)_IOC_SIZEMASK << _IOC_SIZESHIFT;
	if ((request & ~mask) != ((unsigned long)AMDKFD_IOC_SVM & ~mask)) return 0;
	return _IOC_SIZE(request);
}

EXPORT int kfd_double_ioctl(int fd, unsigned long request, void *arg) {
	st.ioctl_calls++;
	if (fd != DOUBLE_KFD_FD || !st.kfd_open) return fail(EBADF);
	uint32_t svm_usize = svm_request_size(request);
	if (svm_usize) request = AMDKFD_IOC_SVM;
	int known;
	uint32_t since = request_since_minor(request, &known);
	if (!known) return fail(ENOTTY);
	if (since > st.version_minor) return fail(EINVAL); /* an older kfd_ioctl: nr beyond its table */
	if (!arg) return fail(EFAULT);
	uint32_t nr = _IOC_NR(request);
	struct double_script *s = script_match(SCRIPT_IOCTL_FAILS, nr);
	if (s) {
		script_consume(s);
		return fail(s->err);
	}
	switch (request) {
	case AMDKFD_IOC_GET_VERSION: return ioctl_get_version(arg);
	case AMDKFD_IOC_GET_PROCESS_APERTURES_NEW: return ioctl_get_process_apertures_new(arg);
	case AMDKFD_IOC_ACQUIRE_VM: return ioctl_acquire_vm(arg);
	case AMDKFD_IOC_ALLOC_MEMORY_OF_GPU: return ioctl_alloc_memory_of_gpu(arg);
	case AMDKFD_IOC_FREE_MEMORY_OF_GPU: return ioctl_free_memory_of_gpu(arg);
	case AMDKFD_IOC_MAP_MEMORY_TO_GPU: return ioctl_map_unmap(arg, 1, nr);
	case AMDKFD_IOC_UNMAP_MEMORY_FROM_GPU:
		return ioctl_map_unmap((struct kfd_ioctl_map_memory_to_gpu_args *)arg, 0, nr);
	case AMDKFD_IOC_SMI_EVENTS: return ioctl_smi_events(arg);
	case AMDKFD_IOC_SVM: return ioctl_svm(arg, svm_usize);
	case AMDKFD_IOC_SET_XNACK_MODE: return ioctl_set_xnack_mode(arg);
	case AMDKFD_IOC_AVAILABLE_MEMORY: return ioctl_available_memory(arg);
	}
	return fail(ENOTTY);
}

/* ---- benchmark baseline ----------------------------------------------------------------- */

enum bench_kind {
	BENCH_SVM_SET_ATTR = 1, /* SET_ATTR of (PREFERRED_LOC gpu0, ACCESS gpu0) on [start, start+size) */
	BENCH_MAP_UNMAP = 2,    /* MAP then UNMAP of `handle` on the first n_gpus GPUs */
};

static uint64_t now_ns(void) {
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ULL + (uint64_t)t.tv_nsec;
}

/*
 * The same ioctls the binding makes, issued by a C loop through kfd_double_ioctl: the cost
 * floor the binding is compared with (bench/kfd.ts). Returns elapsed ns for `iterations`
 * calls (a map/unmap pair counts as one iteration), or -1 with errno on the first failure.
 */
EXPORT int64_t kfd_double_bench_loop(uint32_t kind, uint32_t iterations, uint64_t start_or_handle, uint64_t size) {
	uint64_t t0, t1;
	if (kind == BENCH_SVM_SET_ATTR) {
		struct {
			struct kfd_ioctl_svm_args args;
			struct kfd_ioctl_svm_attribute attrs[2];
		} buf;
		t0 = now_ns();
		for (uint32_t i = 0; i < iterations; i++) {
			buf.args.start_addr = start_or_handle;
			buf.args.size = size;
			buf.args.op = KFD_IOCTL_SVM_OP_SET_ATTR;
			buf.args.nattr = 2;
			buf.attrs[0].type = KFD_IOCTL_SVM_ATTR_PREFERRED_LOC;
			buf.attrs[0].value = st.gpu_ids[0];
			buf.attrs[1].type = KFD_IOCTL_SVM_ATTR_ACCESS;
			buf.attrs[1].value = st.gpu_ids[0];
			if (kfd_double_ioctl(DOUBLE_KFD_FD, AMDKFD_IOC_SVM + (sizeof(buf.attrs) << _IOC_SIZESHIFT), &buf)) return -1;
		}
		t1 = now_ns();
		return (int64_t)(t1 - t0);
	}
	if (kind == BENCH_MAP_UNMAP) {
		uint32_t ids[GPUS_MAX];
		uint32_t n = (uint32_t)size;
		if (n == 0 || n > st.n_gpus) return fail(EINVAL);
		for (uint32_t g = 0; g < n; g++) ids[g] = st.gpu_ids[g];
		struct kfd_ioctl_map_memory_to_gpu_args m;
		t0 = now_ns();
		for (uint32_t i = 0; i < iterations; i++) {
			m.handle = start_or_handle;
			m.device_ids_array_ptr = (uint64_t)(uintptr_t)ids;
			m.n_devices = n;
			m.n_success = 0;
			if (kfd_double_ioctl(DOUBLE_KFD_FD, AMDKFD_IOC_MAP_MEMORY_TO_GPU, &m)) return -1;
			m.n_success = 0;
			if (kfd_double_ioctl(DOUBLE_KFD_FD, AMDKFD_IOC_UNMAP_MEMORY_FROM_GPU, &m)) return -1;
		}
		t1 = now_ns();
		return (int64_t)(t1 - t0);
	}
	return fail(EINVAL);
}
