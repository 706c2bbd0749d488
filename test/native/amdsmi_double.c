/*
 * amdsmi_double: a C TEST DOUBLE of libamd_smi, built at test time (test/native/compile.ts)
 * three times, with -DAMDSMI_DOUBLE_LAYOUT=24, 25 or 26, into three shared objects. Each
 * exports the real entry-point names and signatures, so the binding (runtime/ffi/amdsmi.ts)
 * loads it exactly like the real library, and lays its structs out as that family of
 * libamd_smi does (reference/amdsmi.md):
 *
 * | layout | version answer                     | before init | power | event data (message) | board |
 * |--------|------------------------------------|-------------|-------|----------------------|-------|
 * | 24     | {2024, 24, 6, 3, "24.6.3"}         | NOT_INIT    | 68    | 80 (64)              | 768   |
 * | 25     | {2025, 25, 2, 0, "25.2.0"}         | NOT_INIT    | 40    | 112 (96)             | 1536  |
 * | 26     | {26, 5, 0, "26.5.0"}               | answers     | 192   | 272 (256)            | 1792  |
 *
 * Layout 24 also behaves as 24.x does: it lacks amdsmi_get_processor_handle_from_uuid and
 * amdsmi_get_gpu_virtualization_mode, refuses a NULL socket in amdsmi_get_processor_handles
 * (one socket per GPU, as 24.x keys sockets by BDF), answers a second amdsmi_init with
 * SUCCESS without counting it and tears down at the first amdsmi_shut_down, and its
 * amdsmi_status_code_to_string says "An unknown error occurred" for DRIVER_NOT_LOADED.
 * Layouts 25 and 26 count inits and tear down when the count returns to 0. Temperatures come
 * back in millidegrees from 24 and 25, in degrees from 26.
 *
 * Configuration: a JSON file (amdsmi_double_config_load, or the path in the environment
 * variable AMDSMI_DOUBLE_CONFIG read when the library loads). A strict subset of JSON: one
 * object with "device_file" (string), "gpus" (array of flat objects), "failures" and "delays"
 * (arrays of flat objects); values are strings or integers (no fractions, no nesting deeper
 * than that); u64 values may also be strings ("0x..." or decimal); unknown keys are errors.
 * GPU keys: see GPU_KEYS below. A numeric reading left out reads as "unsupported" (UINT32_MAX
 * in power and activity members, 0xFFFF socket power, NOT_SUPPORTED for a missing temperature
 * sensor or memory kind).
 *
 * Lifecycle: processor and socket handles carry the init generation (bits 24-55) and a tag
 * in the top byte, so they change on every init cycle; a handle of another cycle, or any
 * handle while not initialised, is refused (INVAL / NOT_INIT) and never dereferenced. The
 * configured device file is opened O_RDONLY at the real init and closed at the real shutdown.
 *
 * Test controls (amdsmi_double_* below): failures (a function returns a status N times or
 * forever, for one GPU or all), delays (a function sleeps T ms, for one GPU or all, without
 * holding the state lock; a shutdown ends the sleep and the call answers NOT_INIT; a delayed
 * amdsmi_init sleeps holding it, as init is serialised), event injection, counters (every
 * call; "device" calls made while not initialised, i.e. all but amdsmi_init, amdsmi_shut_down,
 * amdsmi_get_lib_version and amdsmi_status_code_to_string, which are legitimate at any time;
 * inits, shutdowns, real inits and shutdowns, refcount). Thread-safe: one mutex around the
 * state, counters atomic; several Bun Workers call it at once.
 *
 * It is not a driver and touches no hardware.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#ifndef AMDSMI_DOUBLE_LAYOUT
#error "build with -DAMDSMI_DOUBLE_LAYOUT=24, 25 or 26"
#endif
#define LAYOUT AMDSMI_DOUBLE_LAYOUT
#if LAYOUT != 24 && LAYOUT != 25 && LAYOUT != 26
#error "AMDSMI_DOUBLE_LAYOUT must be 24, 25 or 26"
#endif

#define EXPORT __attribute__((visibility("default")))

/* ---- amdsmi types, per layout ---------------------------------------------------------------- */

typedef uint32_t amdsmi_status_t; /* an enum in the real header: 4 bytes, returned in eax */
typedef void *amdsmi_processor_handle;
typedef void *amdsmi_socket_handle;

enum {
	ST_SUCCESS = 0,
	ST_INVAL = 1,
	ST_NOT_SUPPORTED = 2,
	ST_FILE_ERROR = 14,
	ST_INIT_ERROR = 18,
	ST_NOT_FOUND = 31,
	ST_NOT_INIT = 32,
	ST_DRIVER_NOT_LOADED = 34,
	ST_NO_DATA = 40,
	ST_INSUFFICIENT_SIZE = 41,
#if LAYOUT == 25
	ST_MORE_DATA = 57,
#elif LAYOUT == 26
	ST_MORE_DATA = 39,
#else
	ST_MORE_DATA = ST_INSUFFICIENT_SIZE, /* 24.x has no MORE_DATA */
#endif
};

#if LAYOUT == 24
#define STRING_MAX 64
#define EVT_MESSAGE_BYTES 64
#define EVT_BYTES 80
#define POWER_BYTES 68
#define BOARD_BYTES 768
#define ASIC_BYTES 448
#elif LAYOUT == 25
#define STRING_MAX 256
#define EVT_MESSAGE_BYTES 96
#define EVT_BYTES 112
#define POWER_BYTES 40
#define BOARD_BYTES 1536
#define ASIC_BYTES 896
#else
#define STRING_MAX 256
#define EVT_MESSAGE_BYTES 256
#define EVT_BYTES 272
#define POWER_BYTES 192
#define BOARD_BYTES 1792
#define ASIC_BYTES 896
#endif

#if LAYOUT == 26
typedef struct {
	uint32_t major, minor, release;
	const char *build;
} amdsmi_version_t;
#else
typedef struct {
	uint32_t year, major, minor, release;
	const char *build;
} amdsmi_version_t;
#endif
_Static_assert(sizeof(amdsmi_version_t) == 24, "amdsmi_version_t is 24 bytes in every version");
_Static_assert(offsetof(amdsmi_version_t, build) == 16, "build at offset 16 in every version");

#if LAYOUT == 24
typedef struct {
	uint32_t current_socket_power, average_socket_power;
	uint32_t gfx_voltage, soc_voltage, mem_voltage;
	uint32_t power_limit;
	uint32_t reserved[11];
} amdsmi_power_info_t;
#elif LAYOUT == 25
typedef struct {
	uint64_t socket_power;
	uint32_t current_socket_power, average_socket_power;
	uint32_t gfx_voltage, soc_voltage, mem_voltage;
	uint32_t power_limit;
	uint32_t reserved[2];
} amdsmi_power_info_t;
#else
typedef struct {
	uint64_t socket_power;
	uint32_t current_socket_power, average_socket_power;
	uint64_t gfx_voltage, soc_voltage, mem_voltage;
	uint32_t power_limit;
	uint64_t reserved[18];
} amdsmi_power_info_t;
#endif
_Static_assert(sizeof(amdsmi_power_info_t) == POWER_BYTES, "power info size of the layout");

#if LAYOUT == 24
typedef struct {
	char model_number[256];
	char product_serial[32];
	char fru_id[32];
	char product_name[256];
	char manufacturer_name[64];
	uint32_t reserved[32];
} amdsmi_board_info_t;
typedef struct {
	char market_name[256];
	uint32_t vendor_id;
	char vendor_name[STRING_MAX];
	uint32_t subvendor_id;
	uint64_t device_id;
	uint32_t rev_id;
	char asic_serial[32];
	uint32_t oam_id;
	uint32_t reserved[18];
} amdsmi_asic_info_t;
#else
typedef struct {
	char model_number[STRING_MAX];
	char product_serial[STRING_MAX];
	char fru_id[STRING_MAX];
	char product_name[STRING_MAX];
	char manufacturer_name[STRING_MAX];
	uint64_t reserved[LAYOUT == 25 ? 32 : 64];
} amdsmi_board_info_t;
typedef struct {
	char market_name[STRING_MAX];
	uint32_t vendor_id;
	char vendor_name[STRING_MAX];
	uint32_t subvendor_id;
	uint64_t device_id;
	uint32_t rev_id;
	char asic_serial[STRING_MAX];
	uint32_t oam_id;
	uint32_t num_of_compute_units;
	uint64_t target_graphics_version;
	uint32_t subsystem_id;
	uint32_t reserved[21];
} amdsmi_asic_info_t;
#endif
_Static_assert(sizeof(amdsmi_board_info_t) == BOARD_BYTES, "board info size of the layout");
_Static_assert(sizeof(amdsmi_asic_info_t) == ASIC_BYTES, "asic info size of the layout");

typedef struct {
	void *processor_handle;
	uint32_t event; /* amdsmi_evt_notification_type_t */
	char message[EVT_MESSAGE_BYTES];
} amdsmi_evt_notification_data_t;
_Static_assert(sizeof(amdsmi_evt_notification_data_t) == EVT_BYTES, "event data size of the layout");

/* Stable across the three families. */
typedef struct {
	uint64_t kfd_id;
	uint32_t node_id;
	uint32_t current_partition_id;
	uint32_t reserved[12];
} amdsmi_kfd_info_t;
_Static_assert(sizeof(amdsmi_kfd_info_t) == 64, "kfd info");

typedef struct {
	uint8_t xgmi_lanes;
	uint64_t xgmi_hive_id;
	uint64_t xgmi_node_id;
	uint32_t index;
	uint32_t reserved[9];
} amdsmi_xgmi_info_t;
_Static_assert(sizeof(amdsmi_xgmi_info_t) == 64, "xgmi info");

typedef struct {
	uint32_t gfx_activity, umc_activity, mm_activity;
	uint32_t reserved[13];
} amdsmi_engine_usage_t;
_Static_assert(sizeof(amdsmi_engine_usage_t) == 64, "engine usage");

typedef struct {
	uint64_t correctable_count, uncorrectable_count, deferred_count;
	uint64_t reserved[5];
} amdsmi_error_count_t;
_Static_assert(sizeof(amdsmi_error_count_t) == 64, "error count");

/* 24.6 and 26.x agree on the offsets read here (pcie_metric at 96); 26.x fills the padding. */
typedef struct {
	struct {
		uint16_t max_pcie_width;
		uint32_t max_pcie_speed;
		uint32_t pcie_interface_version;
		uint32_t slot_type;
		uint64_t reserved[10];
	} pcie_static;
	struct {
		uint16_t pcie_width;
		uint32_t pcie_speed;
		uint32_t pcie_bandwidth;
		uint64_t pcie_replay_count;
		uint64_t pcie_l0_to_recovery_count;
		uint64_t pcie_replay_roll_over_count;
		uint64_t pcie_nak_sent_count;
		uint64_t pcie_nak_received_count;
		uint64_t reserved[13];
	} pcie_metric;
	uint64_t reserved[32];
} amdsmi_pcie_info_t;
_Static_assert(sizeof(amdsmi_pcie_info_t) == 512, "pcie info");
_Static_assert(offsetof(amdsmi_pcie_info_t, pcie_metric) == 96, "pcie metric offset");

/* ---- limits ------------------------------------------------------------------------------------ */

#define GPUS_MAX 64
#define TEXT_MAX 256
#define CONFIG_BYTES_MAX (1u << 20)
#define FAILURES_MAX 16
#define DELAYS_MAX 16
#define EVENTS_QUEUED_MAX 256
#define ERROR_TEXT_MAX 512
#define FOREVER 0xffffffffu

#define TAG_GPU 0x5dull
#define TAG_SOCKET 0x5cull
#define ABSENT UINT64_MAX
#define TEMP_ABSENT INT64_MIN

/* ---- function table (counters, failures, delays by name) ------------------------------------- */

enum fn {
	FN_INIT,
	FN_SHUT_DOWN,
	FN_GET_LIB_VERSION,
	FN_STATUS_CODE_TO_STRING,
	FN_GET_SOCKET_HANDLES,
	FN_GET_PROCESSOR_HANDLES,
	FN_GET_PROCESSOR_HANDLE_FROM_UUID,
	FN_GET_GPU_DEVICE_UUID,
	FN_GET_GPU_DEVICE_BDF,
	FN_GET_GPU_BOARD_INFO,
	FN_GET_GPU_ASIC_INFO,
	FN_GET_GPU_KFD_INFO,
	FN_GET_GPU_VIRTUALIZATION_MODE,
	FN_GET_GPU_COMPUTE_PARTITION,
	FN_GET_GPU_MEMORY_PARTITION,
	FN_GET_TEMP_METRIC,
	FN_GET_POWER_INFO,
	FN_GET_GPU_ACTIVITY,
	FN_GET_GPU_MEMORY_USAGE,
	FN_GET_GPU_MEMORY_TOTAL,
	FN_GET_XGMI_INFO,
	FN_TOPO_GET_LINK_TYPE,
	FN_GET_PCIE_INFO,
	FN_GET_GPU_TOTAL_ECC_COUNT,
	FN_INIT_GPU_EVENT_NOTIFICATION,
	FN_SET_GPU_EVENT_NOTIFICATION_MASK,
	FN_GET_GPU_EVENT_NOTIFICATION,
	FN_STOP_GPU_EVENT_NOTIFICATION,
	FN_COUNT
};

static const char *const FN_NAMES[FN_COUNT] = {
	"amdsmi_init",
	"amdsmi_shut_down",
	"amdsmi_get_lib_version",
	"amdsmi_status_code_to_string",
	"amdsmi_get_socket_handles",
	"amdsmi_get_processor_handles",
	"amdsmi_get_processor_handle_from_uuid",
	"amdsmi_get_gpu_device_uuid",
	"amdsmi_get_gpu_device_bdf",
	"amdsmi_get_gpu_board_info",
	"amdsmi_get_gpu_asic_info",
	"amdsmi_get_gpu_kfd_info",
	"amdsmi_get_gpu_virtualization_mode",
	"amdsmi_get_gpu_compute_partition",
	"amdsmi_get_gpu_memory_partition",
	"amdsmi_get_temp_metric",
	"amdsmi_get_power_info",
	"amdsmi_get_gpu_activity",
	"amdsmi_get_gpu_memory_usage",
	"amdsmi_get_gpu_memory_total",
	"amdsmi_get_xgmi_info",
	"amdsmi_topo_get_link_type",
	"amdsmi_get_pcie_info",
	"amdsmi_get_gpu_total_ecc_count",
	"amdsmi_init_gpu_event_notification",
	"amdsmi_set_gpu_event_notification_mask",
	"amdsmi_get_gpu_event_notification",
	"amdsmi_stop_gpu_event_notification",
};

static int fn_lookup(const char *name) {
	if (!name) return -1;
	for (int i = 0; i < FN_COUNT; i++)
		if (strcmp(FN_NAMES[i], name) == 0) return i;
	return -1;
}

/* ---- state ------------------------------------------------------------------------------------- */

struct gpu {
	char uuid[TEXT_MAX], model[TEXT_MAX], serial[TEXT_MAX], market_name[TEXT_MAX], product_name[TEXT_MAX];
	char compute_partition[TEXT_MAX], memory_partition[TEXT_MAX];
	uint64_t bdf;
	uint64_t kfd_gpu_id, partition_id;
	uint64_t hive_id, node_id, xgmi_index, xgmi_lanes;
	uint64_t mem_total[3], mem_used[3]; /* VRAM, VIS_VRAM, GTT */
	int64_t temp_c[3];                  /* EDGE, HOTSPOT, VRAM; TEMP_ABSENT when missing */
	uint64_t power_socket_w, power_average_w, power_limit_w;
	uint64_t activity[3]; /* gfx, umc, mm */
	uint64_t pcie_width, pcie_speed_mts, pcie_bandwidth_mbs, pcie_replay_count;
	uint64_t ecc_correctable, ecc_uncorrectable, ecc_deferred;
	uint64_t virtualization_mode;
	int has_uuid, has_bdf;
	/* runtime, per init cycle */
	int events_started;
	uint64_t events_mask;
};

struct failure {
	int fn;
	int32_t gpu; /* -1: any */
	uint32_t status;
	uint32_t times; /* remaining; FOREVER */
};

struct delay {
	int fn;
	int32_t gpu;
	uint32_t ms;
};

struct event {
	uint32_t gpu, type;
	char message[TEXT_MAX];
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
/* Both CLOCK_MONOTONIC, set up by the constructor; broadcast when an init cycle ends. */
static pthread_cond_t events_cond; /* an event was queued */
static pthread_cond_t life_cond;   /* wakes delayed calls */

static struct {
	/* configuration */
	uint32_t n_gpus;
	struct gpu gpus[GPUS_MAX];
	char device_file[TEXT_MAX];
	int config_broken; /* the env config failed to parse: every init fails */
	struct failure failures[FAILURES_MAX];
	struct delay delays[DELAYS_MAX];
	/* lifecycle */
	int initialised;
	uint32_t refcount;
	uint64_t generation;
	uint64_t init_flags;
	int device_fd;
	/* events */
	struct event events[EVENTS_QUEUED_MAX];
	uint32_t n_events;
	char last_error[ERROR_TEXT_MAX];
} st = {.device_fd = -1};

/* Counters: atomic, read without the lock. */
static struct {
	uint64_t calls, calls_uninit;
	uint64_t fn_calls[FN_COUNT];
	uint64_t init_calls, init_ok, init_failed, shutdown_calls, shutdown_ok;
	uint64_t real_inits, real_shutdowns;
	uint64_t events_delivered, events_filtered;
} ctr;

static void count(uint64_t *c) { __atomic_fetch_add(c, 1, __ATOMIC_RELAXED); }
static uint64_t load(const uint64_t *c) { return __atomic_load_n(c, __ATOMIC_RELAXED); }

static void sleep_ms(uint32_t ms) {
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
	}
}

/* ---- handles ------------------------------------------------------------------------------------- */

static void *handle_make(uint64_t tag, uint32_t index) {
	uint64_t v = (tag << 56) | ((st.generation & 0xffffffffull) << 24) | ((uint64_t)index + 1);
	return (void *)(uintptr_t)v;
}

/* GPU index of a handle of the current init cycle, or -1 (never dereferenced). Lock held. */
static int handle_index(const void *h, uint64_t tag) {
	uint64_t v = (uint64_t)(uintptr_t)h;
	if ((v >> 56) != tag) return -1;
	if (((v >> 24) & 0xffffffffull) != (st.generation & 0xffffffffull)) return -1;
	uint64_t i = (v & 0xffffffull);
	if (i == 0 || i > st.n_gpus) return -1;
	return (int)(i - 1);
}

/* ---- the common path of every device call ------------------------------------------------------- */

static struct failure *failure_match(int fn, int gpu) {
	for (int i = 0; i < FAILURES_MAX; i++) {
		struct failure *f = &st.failures[i];
		if (f->times && f->fn == fn && (f->gpu < 0 || f->gpu == gpu)) return f;
	}
	return NULL;
}

static uint32_t delay_match(int fn, int gpu) {
	for (int i = 0; i < DELAYS_MAX; i++) {
		struct delay *d = &st.delays[i];
		if (d->ms && d->fn == fn && (d->gpu < 0 || d->gpu == gpu)) return d->ms;
	}
	return 0;
}

static struct timespec deadline_after(uint32_t ms) {
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	t.tv_sec += ms / 1000;
	t.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (t.tv_nsec >= 1000000000L) {
		t.tv_sec++;
		t.tv_nsec -= 1000000000L;
	}
	return t;
}

/*
 * Count the call, refuse it while not initialised (counted apart) or with a stale handle,
 * sleep as scripted, apply a scripted failure. The sleep releases the lock (other threads go
 * on) and ends early when the init cycle ends: the call then answers NOT_INIT, never reads.
 * Returns ST_SUCCESS with the lock held and *gpu set (-1 for calls without a handle), or the
 * status to return with the lock released.
 */
static amdsmi_status_t call_begin(enum fn fn, const void *h, int *gpu) {
	count(&ctr.calls);
	count(&ctr.fn_calls[fn]);
	pthread_mutex_lock(&lock);
	if (!st.initialised) {
		count(&ctr.calls_uninit);
		pthread_mutex_unlock(&lock);
		return ST_NOT_INIT;
	}
	*gpu = -1;
	if (h) {
		*gpu = handle_index(h, TAG_GPU);
		if (*gpu < 0) {
			pthread_mutex_unlock(&lock);
			return ST_INVAL;
		}
	}
	uint32_t ms = delay_match(fn, *gpu);
	if (ms) {
		uint64_t generation = st.generation;
		struct timespec deadline = deadline_after(ms);
		while (st.initialised && st.generation == generation) {
			if (pthread_cond_timedwait(&life_cond, &lock, &deadline) == ETIMEDOUT) break;
		}
		if (!st.initialised || st.generation != generation) {
			pthread_mutex_unlock(&lock);
			return ST_NOT_INIT;
		}
	}
	struct failure *f = failure_match(fn, *gpu);
	if (f) {
		if (f->times != FOREVER) f->times--;
		uint32_t status = f->status;
		pthread_mutex_unlock(&lock);
		return status;
	}
	return ST_SUCCESS;
}

static amdsmi_status_t call_end(amdsmi_status_t status) {
	pthread_mutex_unlock(&lock);
	return status;
}

static void text_copy(char *dst, size_t cap, const char *src) {
	size_t n = strnlen(src, cap - 1);
	memcpy(dst, src, n);
	dst[n] = 0;
}

/* ---- configuration: a strict JSON subset ----------------------------------------------------------- */

struct jp {
	const char *s;
	size_t n, i;
};

enum { V_STRING = 1, V_NUMBER = 2 };
struct jv {
	int kind;
	char text[TEXT_MAX];
};

static int jp_fail(struct jp *p, const char *what, const char *detail) {
	snprintf(st.last_error, sizeof(st.last_error), "config byte %zu: %s%s%s", p->i, what, detail ? ": " : "",
		 detail ? detail : "");
	return -1;
}

static void jp_ws(struct jp *p) {
	while (p->i < p->n && (p->s[p->i] == ' ' || p->s[p->i] == '\t' || p->s[p->i] == '\n' || p->s[p->i] == '\r'))
		p->i++;
}

static int jp_peek(struct jp *p) { return p->i < p->n ? (unsigned char)p->s[p->i] : -1; }

static int jp_expect(struct jp *p, char c) {
	jp_ws(p);
	if (jp_peek(p) != c) {
		char what[32];
		snprintf(what, sizeof(what), "expected '%c'", c);
		return jp_fail(p, what, NULL);
	}
	p->i++;
	return 0;
}

static int jp_string(struct jp *p, char *out, size_t cap) {
	if (jp_expect(p, '"')) return -1;
	size_t len = 0;
	for (;;) {
		int c = jp_peek(p);
		if (c < 0) return jp_fail(p, "unterminated string", NULL);
		p->i++;
		if (c == '"') break;
		if (c < 0x20) return jp_fail(p, "control character in string", NULL);
		if (c == '\\') {
			int e = jp_peek(p);
			p->i++;
			switch (e) {
			case '"': c = '"'; break;
			case '\\': c = '\\'; break;
			case '/': c = '/'; break;
			case 'n': c = '\n'; break;
			case 't': c = '\t'; break;
			default: return jp_fail(p, "unsupported escape (only \\\" \\\\ \\/ \\n \\t)", NULL);
			}
		}
		if (len + 1 >= cap) return jp_fail(p, "string too long", NULL);
		out[len++] = (char)c;
	}
	out[len] = 0;
	return 0;
}

static int jp_value(struct jp *p, struct jv *v) {
	jp_ws(p);
	int c = jp_peek(p);
	if (c == '"') {
		v->kind = V_STRING;
		return jp_string(p, v->text, sizeof(v->text));
	}
	if (c == '-' || (c >= '0' && c <= '9')) {
		size_t len = 0;
		if (c == '-') v->text[len++] = (char)p->s[p->i++];
		while (jp_peek(p) >= '0' && jp_peek(p) <= '9') {
			if (len + 1 >= sizeof(v->text)) return jp_fail(p, "number too long", NULL);
			v->text[len++] = (char)p->s[p->i++];
		}
		v->text[len] = 0;
		c = jp_peek(p);
		if (c == '.' || c == 'e' || c == 'E') return jp_fail(p, "integers only", NULL);
		if (len == 0 || (len == 1 && v->text[0] == '-')) return jp_fail(p, "bad number", NULL);
		v->kind = V_NUMBER;
		return 0;
	}
	return jp_fail(p, "expected a string or an integer", NULL);
}

typedef int (*jp_key_fn)(struct jp *p, const char *key, void *ctx);

static int jp_object(struct jp *p, jp_key_fn on_key, void *ctx) {
	if (jp_expect(p, '{')) return -1;
	jp_ws(p);
	if (jp_peek(p) == '}') {
		p->i++;
		return 0;
	}
	for (;;) {
		char key[64];
		jp_ws(p);
		if (jp_string(p, key, sizeof(key))) return -1;
		if (jp_expect(p, ':')) return -1;
		if (on_key(p, key, ctx)) return -1;
		jp_ws(p);
		int c = jp_peek(p);
		p->i++;
		if (c == '}') return 0;
		if (c != ',') return jp_fail(p, "expected ',' or '}'", NULL);
	}
}

static int jp_array(struct jp *p, int (*on_elem)(struct jp *p, void *ctx), void *ctx) {
	if (jp_expect(p, '[')) return -1;
	jp_ws(p);
	if (jp_peek(p) == ']') {
		p->i++;
		return 0;
	}
	for (;;) {
		if (on_elem(p, ctx)) return -1;
		jp_ws(p);
		int c = jp_peek(p);
		p->i++;
		if (c == ']') return 0;
		if (c != ',') return jp_fail(p, "expected ',' or ']'", NULL);
	}
}

static int jv_u64(struct jp *p, const struct jv *v, const char *key, uint64_t *out) {
	if (v->text[0] == '-') return jp_fail(p, "negative value", key);
	char *end = NULL;
	errno = 0;
	unsigned long long x = strtoull(v->text, &end, v->kind == V_STRING ? 0 : 10);
	if (errno || !end || *end || end == v->text) return jp_fail(p, "not an unsigned 64-bit integer", key);
	*out = x;
	return 0;
}

static int jv_i64(struct jp *p, const struct jv *v, const char *key, int64_t *out) {
	char *end = NULL;
	errno = 0;
	long long x = strtoll(v->text, &end, 10);
	if (v->kind != V_NUMBER || errno || !end || *end) return jp_fail(p, "not a 64-bit integer", key);
	*out = x;
	return 0;
}

enum { K_STR, K_U64, K_TEMP, K_BDF, K_VIRT };
struct gpu_key {
	const char *name;
	int kind;
	size_t off;
};
#define GK(name, kind, field) {name, kind, offsetof(struct gpu, field)}
static const struct gpu_key GPU_KEYS[] = {
	GK("uuid", K_STR, uuid),
	GK("bdf", K_BDF, bdf), /* "dddd:bb:dd.f" */
	GK("model", K_STR, model),
	GK("serial", K_STR, serial),
	GK("market_name", K_STR, market_name),
	GK("product_name", K_STR, product_name), /* default: market_name */
	GK("compute_partition", K_STR, compute_partition),
	GK("memory_partition", K_STR, memory_partition),
	GK("kfd_gpu_id", K_U64, kfd_gpu_id),
	GK("partition_id", K_U64, partition_id),
	GK("hive_id", K_U64, hive_id),
	GK("node_id", K_U64, node_id),
	GK("xgmi_index", K_U64, xgmi_index),
	GK("xgmi_lanes", K_U64, xgmi_lanes),
	GK("vram_total", K_U64, mem_total[0]),
	GK("vram_used", K_U64, mem_used[0]),
	GK("vis_vram_total", K_U64, mem_total[1]),
	GK("vis_vram_used", K_U64, mem_used[1]),
	GK("gtt_total", K_U64, mem_total[2]),
	GK("gtt_used", K_U64, mem_used[2]),
	GK("temp_edge_c", K_TEMP, temp_c[0]),
	GK("temp_junction_c", K_TEMP, temp_c[1]),
	GK("temp_vram_c", K_TEMP, temp_c[2]),
	GK("power_socket_w", K_U64, power_socket_w),
	GK("power_average_w", K_U64, power_average_w),
	GK("power_limit_w", K_U64, power_limit_w),
	GK("gfx_activity", K_U64, activity[0]),
	GK("umc_activity", K_U64, activity[1]),
	GK("mm_activity", K_U64, activity[2]),
	GK("pcie_width", K_U64, pcie_width),
	GK("pcie_speed_mts", K_U64, pcie_speed_mts),
	GK("pcie_bandwidth_mbs", K_U64, pcie_bandwidth_mbs),
	GK("pcie_replay_count", K_U64, pcie_replay_count),
	GK("ecc_correctable", K_U64, ecc_correctable),
	GK("ecc_uncorrectable", K_U64, ecc_uncorrectable),
	GK("ecc_deferred", K_U64, ecc_deferred),
	GK("virtualization_mode", K_VIRT, virtualization_mode), /* unknown|baremetal|host|guest|passthrough */
};

static const char *const VIRT_NAMES[] = {"unknown", "baremetal", "host", "guest", "passthrough"};

/* Parsing target: a scratch copy, swapped in only when the whole file parsed. */
struct config {
	uint32_t n_gpus;
	struct gpu gpus[GPUS_MAX];
	char device_file[TEXT_MAX];
	uint32_t n_failures, n_delays;
	struct failure failures[FAILURES_MAX];
	struct delay delays[DELAYS_MAX];
};

static void gpu_defaults(struct gpu *g) {
	memset(g, 0, sizeof(*g));
	g->kfd_gpu_id = ABSENT;
	g->partition_id = ABSENT;
	for (int i = 0; i < 3; i++) {
		g->mem_total[i] = ABSENT;
		g->mem_used[i] = ABSENT;
		g->temp_c[i] = TEMP_ABSENT;
		g->activity[i] = ABSENT;
	}
	g->power_socket_w = g->power_average_w = g->power_limit_w = ABSENT;
	g->pcie_width = g->pcie_speed_mts = g->pcie_bandwidth_mbs = g->pcie_replay_count = ABSENT;
	g->ecc_deferred = ABSENT;
	g->virtualization_mode = 1; /* baremetal */
}

static int gpu_key(struct jp *p, const char *key, void *ctx) {
	struct gpu *g = ctx;
	struct jv v;
	if (jp_value(p, &v)) return -1;
	for (size_t k = 0; k < sizeof(GPU_KEYS) / sizeof(GPU_KEYS[0]); k++) {
		const struct gpu_key *gk = &GPU_KEYS[k];
		if (strcmp(gk->name, key) != 0) continue;
		char *field = (char *)g + gk->off;
		switch (gk->kind) {
		case K_STR:
			if (v.kind != V_STRING) return jp_fail(p, "expected a string", key);
			text_copy(field, TEXT_MAX, v.text);
			if (strcmp(key, "uuid") == 0) g->has_uuid = 1;
			return 0;
		case K_U64: return jv_u64(p, &v, key, (uint64_t *)(void *)field);
		case K_TEMP: return jv_i64(p, &v, key, (int64_t *)(void *)field);
		case K_BDF: {
			unsigned dom, bus, dev, fn;
			char tail;
			if (v.kind != V_STRING || sscanf(v.text, "%x:%x:%x.%x%c", &dom, &bus, &dev, &fn, &tail) != 4 || bus > 0xff ||
			    dev > 0x1f || fn > 7)
				return jp_fail(p, "expected a BDF \"dddd:bb:dd.f\"", key);
			g->bdf = (uint64_t)fn | ((uint64_t)dev << 3) | ((uint64_t)bus << 8) | ((uint64_t)dom << 16);
			g->has_bdf = 1;
			return 0;
		}
		case K_VIRT:
			for (uint64_t m = 0; m < sizeof(VIRT_NAMES) / sizeof(VIRT_NAMES[0]); m++) {
				if (v.kind == V_STRING && strcmp(v.text, VIRT_NAMES[m]) == 0) {
					g->virtualization_mode = m;
					return 0;
				}
			}
			return jp_fail(p, "expected unknown|baremetal|host|guest|passthrough", key);
		default: break;
		}
	}
	return jp_fail(p, "unknown GPU key", key);
}

static int gpu_elem(struct jp *p, void *ctx) {
	struct config *c = ctx;
	if (c->n_gpus >= GPUS_MAX) return jp_fail(p, "too many GPUs (GPUS_MAX 64)", NULL);
	struct gpu *g = &c->gpus[c->n_gpus];
	gpu_defaults(g);
	if (jp_object(p, gpu_key, g)) return -1;
	if (!g->has_uuid || !g->has_bdf) return jp_fail(p, "a GPU needs \"uuid\" and \"bdf\"", NULL);
	if (!g->product_name[0]) text_copy(g->product_name, TEXT_MAX, g->market_name);
	c->n_gpus++;
	return 0;
}

/* A failure or delay entry: {"fn": name, "gpu": -1|index, "status": n, "times": n} or {"fn", "gpu", "ms"}. */
struct script_entry {
	int fn;
	int64_t gpu;
	uint64_t status, times, ms;
	int has_status, has_ms;
};

static int script_key(struct jp *p, const char *key, void *ctx) {
	struct script_entry *e = ctx;
	struct jv v;
	if (jp_value(p, &v)) return -1;
	if (strcmp(key, "fn") == 0) {
		e->fn = v.kind == V_STRING ? fn_lookup(v.text) : -1;
		return e->fn < 0 ? jp_fail(p, "unknown amdsmi function", v.text) : 0;
	}
	if (strcmp(key, "gpu") == 0) return jv_i64(p, &v, key, &e->gpu);
	if (strcmp(key, "times") == 0) return jv_u64(p, &v, key, &e->times);
	if (strcmp(key, "status") == 0) {
		e->has_status = 1;
		return jv_u64(p, &v, key, &e->status);
	}
	if (strcmp(key, "ms") == 0) {
		e->has_ms = 1;
		return jv_u64(p, &v, key, &e->ms);
	}
	return jp_fail(p, "unknown key (fn, gpu, status, times, ms)", key);
}

static int failure_elem(struct jp *p, void *ctx) {
	struct config *c = ctx;
	struct script_entry e = {.fn = -1, .gpu = -1, .times = FOREVER};
	if (jp_object(p, script_key, &e)) return -1;
	if (e.fn < 0 || !e.has_status || e.has_ms) return jp_fail(p, "a failure needs \"fn\" and \"status\"", NULL);
	if (c->n_failures >= FAILURES_MAX) return jp_fail(p, "too many failures (16)", NULL);
	c->failures[c->n_failures++] = (struct failure){e.fn, (int32_t)e.gpu, (uint32_t)e.status, (uint32_t)e.times};
	return 0;
}

static int delay_elem(struct jp *p, void *ctx) {
	struct config *c = ctx;
	struct script_entry e = {.fn = -1, .gpu = -1};
	if (jp_object(p, script_key, &e)) return -1;
	if (e.fn < 0 || !e.has_ms || e.has_status) return jp_fail(p, "a delay needs \"fn\" and \"ms\"", NULL);
	if (c->n_delays >= DELAYS_MAX) return jp_fail(p, "too many delays (16)", NULL);
	c->delays[c->n_delays++] = (struct delay){e.fn, (int32_t)e.gpu, (uint32_t)e.ms};
	return 0;
}

static int top_key(struct jp *p, const char *key, void *ctx) {
	struct config *c = ctx;
	if (strcmp(key, "device_file") == 0) {
		struct jv v;
		if (jp_value(p, &v)) return -1;
		if (v.kind != V_STRING) return jp_fail(p, "expected a string", key);
		text_copy(c->device_file, TEXT_MAX, v.text);
		return 0;
	}
	if (strcmp(key, "gpus") == 0) return jp_array(p, gpu_elem, c);
	if (strcmp(key, "failures") == 0) return jp_array(p, failure_elem, c);
	if (strcmp(key, "delays") == 0) return jp_array(p, delay_elem, c);
	return jp_fail(p, "unknown key (device_file, gpus, failures, delays)", key);
}

/* Parse `path` and replace the configuration. Lock held; not while initialised. */
static int config_load_locked(const char *path) {
	static struct config c; /* large: not on the stack; guarded by the lock */
	memset(&c, 0, sizeof(c));
	FILE *f = fopen(path, "rb");
	if (!f) {
		snprintf(st.last_error, sizeof(st.last_error), "cannot open config %s: %s", path, strerror(errno));
		return -1;
	}
	char *buf = malloc(CONFIG_BYTES_MAX + 1);
	size_t n = buf ? fread(buf, 1, CONFIG_BYTES_MAX + 1, f) : 0;
	fclose(f);
	if (!buf || n > CONFIG_BYTES_MAX) {
		free(buf);
		snprintf(st.last_error, sizeof(st.last_error), "config %s: larger than 1 MiB or out of memory", path);
		return -1;
	}
	struct jp p = {buf, n, 0};
	int r = jp_object(&p, top_key, &c);
	if (!r) {
		jp_ws(&p);
		if (p.i != p.n) r = jp_fail(&p, "trailing bytes after the object", NULL);
	}
	free(buf);
	if (r) return -1;
	st.n_gpus = c.n_gpus;
	memcpy(st.gpus, c.gpus, sizeof(c.gpus));
	memcpy(st.device_file, c.device_file, sizeof(st.device_file));
	memset(st.failures, 0, sizeof(st.failures));
	memset(st.delays, 0, sizeof(st.delays));
	memcpy(st.failures, c.failures, sizeof(c.failures));
	memcpy(st.delays, c.delays, sizeof(c.delays));
	st.last_error[0] = 0;
	return 0;
}

__attribute__((constructor)) static void double_load(void) {
	pthread_condattr_t a;
	pthread_condattr_init(&a);
	pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
	pthread_cond_init(&events_cond, &a);
	pthread_cond_init(&life_cond, &a);
	pthread_condattr_destroy(&a);
	const char *path = getenv("AMDSMI_DOUBLE_CONFIG");
	if (path && *path && config_load_locked(path)) {
		st.config_broken = 1;
		fprintf(stderr, "amdsmi_double: %s\n", st.last_error);
	}
}

/* ---- lifecycle --------------------------------------------------------------------------------- */

static void teardown_locked(void) {
	if (st.device_fd >= 0) close(st.device_fd);
	st.device_fd = -1;
	for (uint32_t i = 0; i < st.n_gpus; i++) {
		st.gpus[i].events_started = 0;
		st.gpus[i].events_mask = 0;
	}
	st.n_events = 0;
	st.initialised = 0;
	st.refcount = 0;
	count(&ctr.real_shutdowns);
	pthread_cond_broadcast(&events_cond);
	pthread_cond_broadcast(&life_cond);
}

EXPORT amdsmi_status_t amdsmi_init(uint64_t init_flags) {
	count(&ctr.calls);
	count(&ctr.fn_calls[FN_INIT]);
	count(&ctr.init_calls);
	pthread_mutex_lock(&lock); /* init is serialised, as in 26.x; a scripted delay holds the lock */
	uint32_t ms = delay_match(FN_INIT, -1);
	if (ms) sleep_ms(ms);
	struct failure *f = failure_match(FN_INIT, -1);
	if (f) {
		if (f->times != FOREVER) f->times--;
		amdsmi_status_t status = f->status;
		count(&ctr.init_failed);
		pthread_mutex_unlock(&lock);
		return status;
	}
	if (st.initialised) {
#if LAYOUT != 24
		st.refcount++; /* 24.x: SUCCESS without counting */
#endif
		count(&ctr.init_ok);
		pthread_mutex_unlock(&lock);
		return ST_SUCCESS;
	}
	if (st.config_broken) {
		count(&ctr.init_failed);
		pthread_mutex_unlock(&lock);
		return ST_INIT_ERROR;
	}
	if (st.device_file[0]) {
		st.device_fd = open(st.device_file, O_RDONLY | O_CLOEXEC);
		if (st.device_fd < 0) {
			count(&ctr.init_failed);
			pthread_mutex_unlock(&lock);
			return ST_FILE_ERROR;
		}
	}
	st.generation++;
	st.initialised = 1;
	st.refcount = 1;
	st.init_flags = init_flags;
	st.n_events = 0;
	count(&ctr.real_inits);
	count(&ctr.init_ok);
	pthread_mutex_unlock(&lock);
	return ST_SUCCESS;
}

EXPORT amdsmi_status_t amdsmi_shut_down(void) {
	count(&ctr.calls);
	count(&ctr.fn_calls[FN_SHUT_DOWN]);
	count(&ctr.shutdown_calls);
	pthread_mutex_lock(&lock);
	struct failure *f = failure_match(FN_SHUT_DOWN, -1);
	if (f) {
		if (f->times != FOREVER) f->times--;
		amdsmi_status_t status = f->status;
		pthread_mutex_unlock(&lock);
		return status;
	}
	if (!st.initialised) {
		pthread_mutex_unlock(&lock);
#if LAYOUT == 24
		return ST_SUCCESS;
#else
		return ST_NOT_INIT;
#endif
	}
#if LAYOUT == 24
	teardown_locked(); /* 24.x: the first shutdown tears everything down */
#else
	if (--st.refcount == 0) teardown_locked();
#endif
	count(&ctr.shutdown_ok);
	pthread_mutex_unlock(&lock);
	return ST_SUCCESS;
}

EXPORT amdsmi_status_t amdsmi_get_lib_version(amdsmi_version_t *version) {
	count(&ctr.calls);
	count(&ctr.fn_calls[FN_GET_LIB_VERSION]);
	if (!version) return ST_INVAL;
#if LAYOUT == 26
	*version = (amdsmi_version_t){26, 5, 0, "26.5.0"};
#else
	pthread_mutex_lock(&lock);
	int ready = st.initialised;
	pthread_mutex_unlock(&lock);
	if (!ready) return ST_NOT_INIT; /* 24.x/25.x: AMDSMI_CHECK_INIT() */
#if LAYOUT == 24
	*version = (amdsmi_version_t){2024, 24, 6, 3, "24.6.3"};
#else
	*version = (amdsmi_version_t){2025, 25, 2, 0, "25.2.0"};
#endif
#endif
	return ST_SUCCESS;
}

EXPORT amdsmi_status_t amdsmi_status_code_to_string(amdsmi_status_t status, const char **text) {
	count(&ctr.calls);
	count(&ctr.fn_calls[FN_STATUS_CODE_TO_STRING]);
	if (!text) return ST_INVAL;
	switch (status) {
	case ST_SUCCESS: *text = "AMDSMI_STATUS_SUCCESS: Call succeeded"; break;
	case ST_INVAL: *text = "AMDSMI_STATUS_INVAL: Invalid parameters"; break;
	case ST_NOT_SUPPORTED: *text = "AMDSMI_STATUS_NOT_SUPPORTED: Command not supported"; break;
	case 30: *text = "AMDSMI_STATUS_BUSY: Processor busy"; break;
	case ST_NOT_FOUND: *text = "AMDSMI_STATUS_NOT_FOUND: Processor Not found"; break;
	case ST_NOT_INIT: *text = "AMDSMI_STATUS_NOT_INIT: Processor not initialized"; break;
#if LAYOUT != 24
	case ST_DRIVER_NOT_LOADED: *text = "AMDSMI_STATUS_DRIVER_NOT_LOADED: Processor driver not loaded"; break;
#endif
	case ST_NO_DATA: *text = "AMDSMI_STATUS_NO_DATA: No data was found for a given input"; break;
	default: *text = "An unknown error occurred"; break;
	}
	return ST_SUCCESS;
}

/* ---- discovery ----------------------------------------------------------------------------------- */

EXPORT amdsmi_status_t amdsmi_get_socket_handles(uint32_t *socket_count, amdsmi_socket_handle *sockets) {
	int gpu;
	amdsmi_status_t s = call_begin(FN_GET_SOCKET_HANDLES, NULL, &gpu);
	if (s) return s;
	if (!socket_count) return call_end(ST_INVAL);
	uint32_t n = (st.init_flags & 2) ? st.n_gpus : 0; /* one socket per GPU, as 24.x keys them by BDF */
	if (!sockets) {
		*socket_count = n;
		return call_end(ST_SUCCESS);
	}
	uint32_t k = *socket_count < n ? *socket_count : n;
	for (uint32_t i = 0; i < k; i++) sockets[i] = handle_make(TAG_SOCKET, i);
	*socket_count = k;
	return call_end(k < n ? ST_MORE_DATA : ST_SUCCESS);
}

EXPORT amdsmi_status_t amdsmi_get_processor_handles(amdsmi_socket_handle socket, uint32_t *processor_count,
						    amdsmi_processor_handle *processors) {
	int gpu;
	amdsmi_status_t s = call_begin(FN_GET_PROCESSOR_HANDLES, NULL, &gpu);
	if (s) return s;
	if (!processor_count) return call_end(ST_INVAL);
	uint32_t first = 0, n = (st.init_flags & 2) ? st.n_gpus : 0;
	if (socket) {
		int i = handle_index(socket, TAG_SOCKET);
		if (i < 0) return call_end(ST_INVAL);
		first = (uint32_t)i;
		n = 1;
	} else {
#if LAYOUT == 24
		return call_end(ST_INVAL); /* 24.x needs a socket */
#endif
	}
	if (!processors) {
		*processor_count = n;
		return call_end(ST_SUCCESS);
	}
	uint32_t k = *processor_count < n ? *processor_count : n;
	for (uint32_t i = 0; i < k; i++) processors[i] = handle_make(TAG_GPU, first + i);
	*processor_count = k;
	return call_end(k < n ? ST_MORE_DATA : ST_SUCCESS);
}

#if LAYOUT != 24
EXPORT amdsmi_status_t amdsmi_get_processor_handle_from_uuid(const char *uuid, amdsmi_processor_handle *processor) {
	int gpu;
	amdsmi_status_t s = call_begin(FN_GET_PROCESSOR_HANDLE_FROM_UUID, NULL, &gpu);
	if (s) return s;
	if (!uuid || !processor) return call_end(ST_INVAL);
	for (uint32_t i = 0; i < st.n_gpus; i++) {
		if (strcasecmp(st.gpus[i].uuid, uuid) == 0) {
			*processor = handle_make(TAG_GPU, i);
			return call_end(ST_SUCCESS);
		}
	}
	return call_end(ST_NOT_FOUND);
}
#endif

EXPORT amdsmi_status_t amdsmi_get_gpu_device_uuid(amdsmi_processor_handle h, unsigned int *uuid_length, char *uuid) {
	int gpu;
	amdsmi_status_t s = call_begin(FN_GET_GPU_DEVICE_UUID, h, &gpu);
	if (s) return s;
	if (!uuid_length || !uuid) return call_end(ST_INVAL);
	size_t len = strlen(st.gpus[gpu].uuid);
	if (*uuid_length < 38 || *uuid_length < len + 1) return call_end(ST_INSUFFICIENT_SIZE);
	memcpy(uuid, st.gpus[gpu].uuid, len + 1);
	*uuid_length = (unsigned int)len;
	return call_end(ST_SUCCESS);
}

EXPORT amdsmi_status_t amdsmi_get_gpu_device_bdf(amdsmi_processor_handle h, uint64_t *bdf) {
	int gpu;
	amdsmi_status_t s = call_begin(FN_GET_GPU_DEVICE_BDF, h, &gpu);
	if (s) return s;
	if (!bdf) return call_end(ST_INVAL);
	*bdf = st.gpus[gpu].bdf;
	return call_end(ST_SUCCESS);
}

/* ---- identity ------------------------------------------------------------------------------------ */

EXPORT amdsmi_status_t amdsmi_get_gpu_board_info(amdsmi_processor_handle h, amdsmi_board_info_t *info) {
	int gpu;
	amdsmi_status_t s = call_begin(FN_GET_GPU_BOARD_INFO, h, &gpu);
	if (s) return s;
	if (!info) return call_end(ST_INVAL);
	const struct gpu *g = &st.gpus[gpu];
	memset(info, 0, sizeof(*info));
	text_copy(info->model_number, sizeof(info->model_number), g->model);
	text_copy(info->product_serial, sizeof(info->product_serial), g->serial);
	text_copy(info->product_name, sizeof(info->product_name), g->product_name);
	text_copy(info->manufacturer_name, sizeof(info->manufacturer_name), "Advanced Micro Devices, Inc. [AMD/ATI]");
	return call_end(ST_SUCCESS);
}

EXPORT amdsmi_status_t amdsmi_get_gpu_asic_info(amdsmi_processor_handle h, amdsmi_asic_info_t *info) {
	int gpu;
	amdsmi_status_t s = call_begin(FN_GET_GPU_ASIC_INFO, h, &gpu);
	if (s) return s;
	if (!info) return call_end(ST_INVAL);
	memset(info, 0, sizeof(*info));
	text_copy(info->market_name, sizeof(info->market_name), st.gpus[gpu].market_name);
	info->vendor_id = 0x1002;
	info->oam_id = 0xffffffffu;
	return call_end(ST_SUCCESS);
}

EXPORT amdsmi_status_t amdsmi_get_gpu_kfd_info(amdsmi_processor_handle h, amdsmi_kfd_info_t *info) {
	int gpu;
	amdsmi_status_t s = call_begin(FN_GET_GPU_KFD_INFO, h, &gpu);
	if (s) return s;
	if (!info) return call_end(ST_INVAL);
	const struct gpu *g = &st.gpus[gpu];
	memset(info, 0, sizeof(*info));
	info->kfd_id = g->kfd_gpu_id;
	info->node_id = (uint32_t)gpu + 1;
	info->current_partition_id = g->partition_id == ABSENT ? 0xffffffffu : (uint32_t)g->partition_id;
	return call_end(ST_SUCCESS);
}

#if LAYOUT != 24
EXPORT amdsmi_status_t amdsmi_get_gpu_virtualization_mode(amdsmi_processor_handle h, uint32_t *mode) {
	int gpu;
	amdsmi_status_t s = call_begin(FN_GET_GPU_VIRTUALIZATION_MODE, h, &gpu);
	if (s) return s;
	if (!mode) return call_end(ST_INVAL);
	*mode = (uint32_t)st.gpus[gpu].virtualization_mode;
	return call_end(ST_SUCCESS);
}
#endif

static amdsmi_status_t partition_text(enum fn fn, amdsmi_processor_handle h, char *out, uint32_t len, size_t field) {
	int gpu;
	amdsmi_status_t s = call_begin(fn, h, &gpu);
	if (s) return s;
	if (!out || len == 0) return call_end(ST_INVAL);
	const char *text = (const char *)&st.gpus[gpu] + field;
	if (!text[0]) return call_end(ST_NOT_SUPPORTED);
	if (strlen(text) + 1 > len) return call_end(ST_INSUFFICIENT_SIZE);
	text_copy(out, len, text);
	return call_end(ST_SUCCESS);
}

EXPORT amdsmi_status_t amdsmi_get_gpu_compute_partition(amdsmi_processor_handle h, char *out, uint32_t len) {
	return partition_text(FN_GET_GPU_COMPUTE_PARTITION, h, out, len, offsetof(struct gpu, compute_partition));
}

EXPORT amdsmi_status_t amdsmi_get_gpu_memory_partition(amdsmi_processor_handle h, char *out, uint32_t len) {
	return partition_text(FN_GET_GPU_MEMORY_PARTITION, h, out, len, offsetof(struct gpu, memory_partition));
}

/* ---- readings ------------------------------------------------------------------------------------- */

EXPORT amdsmi_status_t amdsmi_get_temp_metric(amdsmi_processor_handle h, uint32_t sensor, uint32_t metric,
					      int64_t *temperature) {
	int gpu;
	amdsmi_status_t s = call_begin(FN_GET_TEMP_METRIC, h, &gpu);
	if (s) return s;
	if (!temperature) return call_end(ST_INVAL);
	if (sensor > 2 || metric != 0) return call_end(ST_NOT_SUPPORTED); /* EDGE/HOTSPOT/VRAM, CURRENT */
	int64_t c = st.gpus[gpu].temp_c[sensor];
	if (c == TEMP_ABSENT) return call_end(ST_NOT_SUPPORTED);
#if LAYOUT == 26
	*temperature = c; /* degrees */
#else
	*temperature = c * 1000; /* millidegrees */
#endif
	return call_end(ST_SUCCESS);
}

static uint32_t u32_or_max(uint64_t v) { return v == ABSENT ? 0xffffffffu : (uint32_t)v; }

EXPORT amdsmi_status_t amdsmi_get_power_info(amdsmi_processor_handle h, amdsmi_power_info_t *info) {
	int gpu;
	amdsmi_status_t s = call_begin(FN_GET_POWER_INFO, h, &gpu);
	if (s) return s;
	if (!info) return call_end(ST_INVAL);
	const struct gpu *g = &st.gpus[gpu];
	memset(info, 0, sizeof(*info));
#if LAYOUT != 24
	info->socket_power = g->power_socket_w == ABSENT ? 0xffff : g->power_socket_w;
#endif
	info->current_socket_power = u32_or_max(g->power_socket_w);
	info->average_socket_power = u32_or_max(g->power_average_w);
	info->gfx_voltage = 0xffffffffu;
	info->soc_voltage = 0xffffffffu;
	info->mem_voltage = 0xffffffffu;
	info->power_limit = u32_or_max(g->power_limit_w);
	return call_end(ST_SUCCESS);
}

EXPORT amdsmi_status_t amdsmi_get_gpu_activity(amdsmi_processor_handle h, amdsmi_engine_usage_t *info) {
	int gpu;
	amdsmi_status_t s = call_begin(FN_GET_GPU_ACTIVITY, h, &gpu);
	if (s) return s;
	if (!info) return call_end(ST_INVAL);
	const struct gpu *g = &st.gpus[gpu];
	memset(info, 0, sizeof(*info));
	info->gfx_activity = u32_or_max(g->activity[0]);
	info->umc_activity = u32_or_max(g->activity[1]);
	info->mm_activity = u32_or_max(g->activity[2]);
	return call_end(ST_SUCCESS);
}

static amdsmi_status_t memory_read(enum fn fn, amdsmi_processor_handle h, uint32_t type, uint64_t *out, int total) {
	int gpu;
	amdsmi_status_t s = call_begin(fn, h, &gpu);
	if (s) return s;
	if (!out || type > 2) return call_end(ST_INVAL);
	uint64_t v = total ? st.gpus[gpu].mem_total[type] : st.gpus[gpu].mem_used[type];
	if (v == ABSENT) return call_end(ST_NOT_SUPPORTED);
	*out = v;
	return call_end(ST_SUCCESS);
}

EXPORT amdsmi_status_t amdsmi_get_gpu_memory_usage(amdsmi_processor_handle h, uint32_t type, uint64_t *used) {
	return memory_read(FN_GET_GPU_MEMORY_USAGE, h, type, used, 0);
}

EXPORT amdsmi_status_t amdsmi_get_gpu_memory_total(amdsmi_processor_handle h, uint32_t type, uint64_t *total) {
	return memory_read(FN_GET_GPU_MEMORY_TOTAL, h, type, total, 1);
}

EXPORT amdsmi_status_t amdsmi_get_xgmi_info(amdsmi_processor_handle h, amdsmi_xgmi_info_t *info) {
	int gpu;
	amdsmi_status_t s = call_begin(FN_GET_XGMI_INFO, h, &gpu);
	if (s) return s;
	if (!info) return call_end(ST_INVAL);
	const struct gpu *g = &st.gpus[gpu];
	memset(info, 0, sizeof(*info));
	info->xgmi_lanes = (uint8_t)g->xgmi_lanes;
	info->xgmi_hive_id = g->hive_id;
	info->xgmi_node_id = g->node_id;
	info->index = (uint32_t)g->xgmi_index;
	return call_end(ST_SUCCESS);
}

/* Same nonzero hive: XGMI, one hop. Otherwise PCIe through the root complex, two hops. */
EXPORT amdsmi_status_t amdsmi_topo_get_link_type(amdsmi_processor_handle src, amdsmi_processor_handle dst,
						 uint64_t *hops, uint32_t *type) {
	int gpu;
	amdsmi_status_t s = call_begin(FN_TOPO_GET_LINK_TYPE, src, &gpu);
	if (s) return s;
	int other = handle_index(dst, TAG_GPU);
	if (other < 0 || !hops || !type) return call_end(ST_INVAL);
	const struct gpu *a = &st.gpus[gpu], *b = &st.gpus[other];
	if (gpu == other) {
		*hops = 0;
		*type = 0;
	} else if (a->hive_id && a->hive_id == b->hive_id) {
		*hops = 1;
		*type = 2; /* XGMI */
	} else {
		*hops = 2;
		*type = 1; /* PCIE */
	}
	return call_end(ST_SUCCESS);
}

EXPORT amdsmi_status_t amdsmi_get_pcie_info(amdsmi_processor_handle h, amdsmi_pcie_info_t *info) {
	int gpu;
	amdsmi_status_t s = call_begin(FN_GET_PCIE_INFO, h, &gpu);
	if (s) return s;
	if (!info) return call_end(ST_INVAL);
	const struct gpu *g = &st.gpus[gpu];
	memset(info, 0, sizeof(*info));
	info->pcie_static.max_pcie_width = 16;
	info->pcie_static.max_pcie_speed = 32;
	info->pcie_metric.pcie_width = g->pcie_width == ABSENT ? 0xffff : (uint16_t)g->pcie_width;
	info->pcie_metric.pcie_speed = u32_or_max(g->pcie_speed_mts);
	info->pcie_metric.pcie_bandwidth = u32_or_max(g->pcie_bandwidth_mbs);
	info->pcie_metric.pcie_replay_count = g->pcie_replay_count;
	return call_end(ST_SUCCESS);
}

EXPORT amdsmi_status_t amdsmi_get_gpu_total_ecc_count(amdsmi_processor_handle h, amdsmi_error_count_t *ec) {
	int gpu;
	amdsmi_status_t s = call_begin(FN_GET_GPU_TOTAL_ECC_COUNT, h, &gpu);
	if (s) return s;
	if (!ec) return call_end(ST_INVAL);
	const struct gpu *g = &st.gpus[gpu];
	memset(ec, 0, sizeof(*ec));
	ec->correctable_count = g->ecc_correctable;
	ec->uncorrectable_count = g->ecc_uncorrectable;
	ec->deferred_count = g->ecc_deferred;
	return call_end(ST_SUCCESS);
}

/* ---- event notification ------------------------------------------------------------------------- */

EXPORT amdsmi_status_t amdsmi_init_gpu_event_notification(amdsmi_processor_handle h) {
	int gpu;
	amdsmi_status_t s = call_begin(FN_INIT_GPU_EVENT_NOTIFICATION, h, &gpu);
	if (s) return s;
	st.gpus[gpu].events_started = 1;
	return call_end(ST_SUCCESS);
}

EXPORT amdsmi_status_t amdsmi_set_gpu_event_notification_mask(amdsmi_processor_handle h, uint64_t mask) {
	int gpu;
	amdsmi_status_t s = call_begin(FN_SET_GPU_EVENT_NOTIFICATION_MASK, h, &gpu);
	if (s) return s;
	if (!st.gpus[gpu].events_started) return call_end(ST_INVAL);
	st.gpus[gpu].events_mask = mask;
	return call_end(ST_SUCCESS);
}

EXPORT amdsmi_status_t amdsmi_stop_gpu_event_notification(amdsmi_processor_handle h) {
	int gpu;
	amdsmi_status_t s = call_begin(FN_STOP_GPU_EVENT_NOTIFICATION, h, &gpu);
	if (s) return s;
	st.gpus[gpu].events_started = 0;
	st.gpus[gpu].events_mask = 0;
	uint32_t k = 0;
	for (uint32_t i = 0; i < st.n_events; i++)
		if (st.events[i].gpu != (uint32_t)gpu) st.events[k++] = st.events[i];
	st.n_events = k;
	return call_end(ST_SUCCESS);
}

EXPORT amdsmi_status_t amdsmi_get_gpu_event_notification(int timeout_ms, uint32_t *num_elem,
							   amdsmi_evt_notification_data_t *data) {
	int gpu;
	amdsmi_status_t s = call_begin(FN_GET_GPU_EVENT_NOTIFICATION, NULL, &gpu);
	if (s) return s;
	if (!num_elem || !data || *num_elem == 0) return call_end(ST_INVAL);
	uint64_t generation = st.generation;
	if (timeout_ms > 0 && st.n_events == 0) {
		struct timespec deadline = deadline_after((uint32_t)timeout_ms);
		while (st.n_events == 0 && st.initialised && st.generation == generation) {
			if (pthread_cond_timedwait(&events_cond, &lock, &deadline) == ETIMEDOUT) break;
		}
	}
	if (!st.initialised || st.generation != generation) return call_end(ST_NOT_INIT);
	uint32_t k = *num_elem < st.n_events ? *num_elem : st.n_events;
	for (uint32_t i = 0; i < k; i++) {
		memset(&data[i], 0, sizeof(data[i]));
		data[i].processor_handle = handle_make(TAG_GPU, st.events[i].gpu);
		data[i].event = st.events[i].type;
		text_copy(data[i].message, sizeof(data[i].message), st.events[i].message);
	}
	memmove(st.events, st.events + k, (st.n_events - k) * sizeof(st.events[0]));
	st.n_events -= k;
	*num_elem = k;
	return call_end(k ? ST_SUCCESS : ST_NO_DATA);
}

/* ---- test controls ---------------------------------------------------------------------------------- */

/* The layout this build lays its structs out as: 24, 25 or 26. */
EXPORT int amdsmi_double_layout(void) { return LAYOUT; }

/* Forget everything but the init generation (stale handles stay stale): tear down if
 * initialised (closing the device file), drop configuration, scripts, events and counters. */
EXPORT void amdsmi_double_reset(void) {
	pthread_mutex_lock(&lock);
	if (st.initialised) teardown_locked();
	uint64_t generation = st.generation;
	memset(&st, 0, sizeof(st));
	st.device_fd = -1;
	st.generation = generation;
	memset(&ctr, 0, sizeof(ctr));
	pthread_mutex_unlock(&lock);
}

/* Replace the configuration with the JSON file at `path`. 0, or -1 (see amdsmi_double_last_error);
 * refused while initialised. */
EXPORT int amdsmi_double_config_load(const char *path) {
	pthread_mutex_lock(&lock);
	int r;
	if (!path) {
		snprintf(st.last_error, sizeof(st.last_error), "config path is NULL");
		r = -1;
	} else if (st.initialised) {
		snprintf(st.last_error, sizeof(st.last_error), "config_load while initialised: shut down first");
		r = -1;
	} else {
		r = config_load_locked(path);
		if (!r) st.config_broken = 0;
	}
	pthread_mutex_unlock(&lock);
	return r;
}

/* The reason of the last failed control call ("" when none). Valid until the next control call. */
EXPORT const char *amdsmi_double_last_error(void) { return st.last_error; }

/* `fn` returns `status` for GPU index `gpu` (-1: any GPU, and calls without a handle), `times`
 * times (0xffffffff: forever). 0, or -1 for an unknown function or no free slot. */
EXPORT int amdsmi_double_fail(const char *fn, int32_t gpu, uint32_t status, uint32_t times) {
	int f = fn_lookup(fn);
	if (f < 0 || times == 0) return -1;
	pthread_mutex_lock(&lock);
	int r = -1;
	for (int i = 0; i < FAILURES_MAX; i++) {
		if (st.failures[i].times == 0) {
			st.failures[i] = (struct failure){f, gpu, status, times};
			r = 0;
			break;
		}
	}
	pthread_mutex_unlock(&lock);
	return r;
}

/* `fn` sleeps `ms` for GPU index `gpu` (-1: any) before answering. 0, or -1. */
EXPORT int amdsmi_double_delay(const char *fn, int32_t gpu, uint32_t ms) {
	int f = fn_lookup(fn);
	if (f < 0 || ms == 0) return -1;
	pthread_mutex_lock(&lock);
	int r = -1;
	for (int i = 0; i < DELAYS_MAX; i++) {
		if (st.delays[i].ms == 0) {
			st.delays[i] = (struct delay){f, gpu, ms};
			r = 0;
			break;
		}
	}
	pthread_mutex_unlock(&lock);
	return r;
}

/* Drop every failure and delay. */
EXPORT void amdsmi_double_scripts_clear(void) {
	pthread_mutex_lock(&lock);
	memset(st.failures, 0, sizeof(st.failures));
	memset(st.delays, 0, sizeof(st.delays));
	pthread_mutex_unlock(&lock);
}

/* Raise event `type` (1..64) with `message` on GPU index `gpu`: queued when that GPU's event
 * notification is started and its mask enables the type (bit type-1). 1 queued, 0 filtered,
 * -1 bad arguments or a full queue. */
EXPORT int amdsmi_double_event_push(uint32_t gpu, uint32_t type, const char *message) {
	if (type < 1 || type > 64 || !message) return -1;
	pthread_mutex_lock(&lock);
	int r;
	if (!st.initialised || gpu >= st.n_gpus) {
		r = -1;
	} else if (!st.gpus[gpu].events_started || !(st.gpus[gpu].events_mask & (1ull << (type - 1)))) {
		count(&ctr.events_filtered);
		r = 0;
	} else if (st.n_events >= EVENTS_QUEUED_MAX) {
		r = -1;
	} else {
		struct event *e = &st.events[st.n_events++];
		e->gpu = gpu;
		e->type = type;
		text_copy(e->message, sizeof(e->message), message);
		count(&ctr.events_delivered);
		pthread_cond_broadcast(&events_cond);
		r = 1;
	}
	pthread_mutex_unlock(&lock);
	return r;
}

/* A counter by name, or UINT64_MAX for an unknown name. */
EXPORT uint64_t amdsmi_double_counter(const char *name) {
	if (!name) return UINT64_MAX;
	static const struct {
		const char *name;
		const uint64_t *c;
	} COUNTERS[] = {
		{"calls", &ctr.calls},
		{"calls_uninit", &ctr.calls_uninit},
		{"init_calls", &ctr.init_calls},
		{"init_ok", &ctr.init_ok},
		{"init_failed", &ctr.init_failed},
		{"shutdown_calls", &ctr.shutdown_calls},
		{"shutdown_ok", &ctr.shutdown_ok},
		{"real_inits", &ctr.real_inits},
		{"real_shutdowns", &ctr.real_shutdowns},
		{"events_delivered", &ctr.events_delivered},
		{"events_filtered", &ctr.events_filtered},
	};
	for (size_t i = 0; i < sizeof(COUNTERS) / sizeof(COUNTERS[0]); i++)
		if (strcmp(COUNTERS[i].name, name) == 0) return load(COUNTERS[i].c);
	uint64_t v = UINT64_MAX;
	pthread_mutex_lock(&lock);
	if (strcmp(name, "refcount") == 0) v = st.refcount;
	else if (strcmp(name, "initialised") == 0) v = (uint64_t)st.initialised;
	else if (strcmp(name, "generation") == 0) v = st.generation;
	else if (strcmp(name, "gpus") == 0) v = st.n_gpus;
	else if (strcmp(name, "events_queued") == 0) v = st.n_events;
	pthread_mutex_unlock(&lock);
	return v;
}

/* Calls made to amdsmi function `fn` (any outcome), or UINT64_MAX for an unknown name. */
EXPORT uint64_t amdsmi_double_fn_calls(const char *fn) {
	int f = fn_lookup(fn);
	return f < 0 ? UINT64_MAX : load(&ctr.fn_calls[f]);
}

/* The device file descriptor held while initialised, or -1. */
EXPORT int amdsmi_double_device_fd(void) {
	pthread_mutex_lock(&lock);
	int fd = st.device_fd;
	pthread_mutex_unlock(&lock);
	return fd;
}
