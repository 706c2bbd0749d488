/*
 * rocm_smi_double: a C TEST DOUBLE of librocm_smi64, built at test time (test/native/compile.ts)
 * once per combination of the definitions below. It exports the real entry-point names and
 * signatures, so the rocm-smi binding (runtime/ffi/rocm-smi.ts) loads it exactly like the real
 * library, and it writes its out-structs whole, at the size its layout family has:
 *
 * | RSMI_DOUBLE_ABI | rsmi_frequencies_t                                  | rsmi_pcie_bandwidth_t |
 * |-----------------|-----------------------------------------------------|-----------------------|
 * | 5               | {u32 num_supported; u32 current; u64 frequency[32]} | 392, lanes at 264     |
 * | 6               | {bool has_deep_sleep; u32 num_supported @4; u32 current @8; u64 frequency[33] @16} | 416, lanes at 280 |
 *
 * - RSMI_DOUBLE_MESSAGE_SIZE: MAX_EVENT_NOTIFICATION_MSG_SIZE, 64 (record 72) or 96 (record 104);
 * - RSMI_DOUBLE_VERSION_MAJOR / _MINOR / _PATCH: what rsmi_version_get answers;
 *   RSMI_DOUBLE_VERSION_FAIL=1 makes it answer RSMI_STATUS_INTERNAL_EXCEPTION instead;
 * - RSMI_DOUBLE_POWER_GET=1 exports rsmi_dev_power_get (an entry point of ROCm 6.0 and later).
 *
 * One GPU (device index 0) once rsmi_init has been called (inits are counted; rsmi_shut_down
 * without an init answers INIT_ERROR). PCIe: three levels {2.5, 8, 16} GT/s x {1, 8, 16} lanes,
 * the current one the last; has_deep_sleep is true in layout 6, so that reading it with the
 * layout-5 offsets finds no valid level. rsmi_event_notification_init queues three events for
 * the device; rsmi_event_notification_get hands out at most *num_elem of them per call, in
 * order, records RSMI_DOUBLE_MESSAGE_SIZE apart, and answers NO_DATA when none is left. The
 * second message is longer than 64 bytes when the message size allows it.
 *
 * Not thread-safe; it is not a driver and touches no hardware.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if !defined(RSMI_DOUBLE_ABI) || (RSMI_DOUBLE_ABI != 5 && RSMI_DOUBLE_ABI != 6)
#error "build with -DRSMI_DOUBLE_ABI=5 or 6"
#endif
#if !defined(RSMI_DOUBLE_MESSAGE_SIZE) || (RSMI_DOUBLE_MESSAGE_SIZE != 64 && RSMI_DOUBLE_MESSAGE_SIZE != 96)
#error "build with -DRSMI_DOUBLE_MESSAGE_SIZE=64 or 96"
#endif
#if !defined(RSMI_DOUBLE_VERSION_MAJOR) || !defined(RSMI_DOUBLE_VERSION_MINOR) || !defined(RSMI_DOUBLE_VERSION_PATCH)
#error "build with -DRSMI_DOUBLE_VERSION_MAJOR=.. -DRSMI_DOUBLE_VERSION_MINOR=.. -DRSMI_DOUBLE_VERSION_PATCH=.."
#endif
#ifndef RSMI_DOUBLE_VERSION_FAIL
#define RSMI_DOUBLE_VERSION_FAIL 0
#endif
#ifndef RSMI_DOUBLE_POWER_GET
#define RSMI_DOUBLE_POWER_GET 0
#endif

#define EXPORT __attribute__((visibility("default")))

enum {
	RSMI_STATUS_SUCCESS = 0,
	RSMI_STATUS_INVALID_ARGS = 1,
	RSMI_STATUS_NOT_SUPPORTED = 2,
	RSMI_STATUS_INTERNAL_EXCEPTION = 6,
	RSMI_STATUS_INIT_ERROR = 8,
	RSMI_STATUS_NO_DATA = 14,
};
typedef uint32_t rsmi_status_t;

#if RSMI_DOUBLE_ABI == 5
#define MAX_NUM_FREQUENCIES 32
typedef struct {
	uint32_t num_supported;
	uint32_t current;
	uint64_t frequency[MAX_NUM_FREQUENCIES];
} rsmi_frequencies_t;
_Static_assert(sizeof(rsmi_frequencies_t) == 264, "layout 5 rsmi_frequencies_t");
#else
#define MAX_NUM_FREQUENCIES 33
typedef struct {
	bool has_deep_sleep;
	uint32_t num_supported;
	uint32_t current;
	uint64_t frequency[MAX_NUM_FREQUENCIES];
} rsmi_frequencies_t;
_Static_assert(sizeof(rsmi_frequencies_t) == 280, "layout 6 rsmi_frequencies_t");
#endif
typedef struct {
	rsmi_frequencies_t transfer_rate;
	uint32_t lanes[MAX_NUM_FREQUENCIES];
} rsmi_pcie_bandwidth_t;

typedef struct {
	uint32_t dv_ind;
	uint32_t event;
	char message[RSMI_DOUBLE_MESSAGE_SIZE];
} rsmi_evt_notification_data_t;

typedef struct {
	uint32_t major, minor, patch;
	const char *build;
} rsmi_version_t;

typedef struct {
	uint64_t correctable_err;
	uint64_t uncorrectable_err;
} rsmi_error_count_t;

static unsigned inits;
static unsigned events_queued;
static unsigned events_taken;

#define EVENTS_QUEUED 3
static const uint32_t EVENT_TYPES[EVENTS_QUEUED] = {1, 2, 4};
static const char *const EVENT_MESSAGES[EVENTS_QUEUED] = {
	"vmfault pid=4242 addr=0x7f0000001000",
#if RSMI_DOUBLE_MESSAGE_SIZE > 64
	"thermal-throttle bitmask=0x0000000000000004 counter=0000000017 since-boot-ms=00000123456",
#else
	"thermal-throttle bitmask=0x4 counter=17",
#endif
	"gpu-post-reset reset_seq=3",
};

/* The device index check of every device call: one GPU, only while initialised. */
static rsmi_status_t device_check(uint32_t dv) {
	return inits > 0 && dv == 0 ? RSMI_STATUS_SUCCESS : RSMI_STATUS_INVALID_ARGS;
}

EXPORT rsmi_status_t rsmi_init(uint64_t flags) {
	(void)flags;
	inits++;
	return RSMI_STATUS_SUCCESS;
}

EXPORT rsmi_status_t rsmi_shut_down(void) {
	if (inits == 0) return RSMI_STATUS_INIT_ERROR;
	inits--;
	return RSMI_STATUS_SUCCESS;
}

EXPORT rsmi_status_t rsmi_num_monitor_devices(uint32_t *n) {
	if (n == NULL) return RSMI_STATUS_INVALID_ARGS;
	*n = inits > 0 ? 1 : 0;
	return RSMI_STATUS_SUCCESS;
}

EXPORT rsmi_status_t rsmi_status_string(rsmi_status_t status, const char **text) {
	if (text == NULL) return RSMI_STATUS_INVALID_ARGS;
	switch (status) {
	case RSMI_STATUS_SUCCESS: *text = "RSMI_STATUS_SUCCESS: double"; break;
	case RSMI_STATUS_INVALID_ARGS: *text = "RSMI_STATUS_INVALID_ARGS: double"; break;
	case RSMI_STATUS_NOT_SUPPORTED: *text = "RSMI_STATUS_NOT_SUPPORTED: double"; break;
	case RSMI_STATUS_INIT_ERROR: *text = "RSMI_STATUS_INIT_ERROR: double"; break;
	default: *text = "RSMI_STATUS_UNKNOWN_ERROR: double"; break;
	}
	return RSMI_STATUS_SUCCESS;
}

EXPORT rsmi_status_t rsmi_version_get(rsmi_version_t *v) {
	if (v == NULL) return RSMI_STATUS_INVALID_ARGS;
	if (RSMI_DOUBLE_VERSION_FAIL) return RSMI_STATUS_INTERNAL_EXCEPTION;
	v->major = RSMI_DOUBLE_VERSION_MAJOR;
	v->minor = RSMI_DOUBLE_VERSION_MINOR;
	v->patch = RSMI_DOUBLE_VERSION_PATCH;
	v->build = "double";
	return RSMI_STATUS_SUCCESS;
}

EXPORT rsmi_status_t rsmi_dev_id_get(uint32_t dv, uint16_t *id) {
	rsmi_status_t s = device_check(dv);
	if (s != RSMI_STATUS_SUCCESS) return s;
	*id = 0x74a1;
	return RSMI_STATUS_SUCCESS;
}

EXPORT rsmi_status_t rsmi_dev_pci_id_get(uint32_t dv, uint64_t *bdfid) {
	rsmi_status_t s = device_check(dv);
	if (s != RSMI_STATUS_SUCCESS) return s;
	*bdfid = 0xc100; /* 0000:c1:00.0 */
	return RSMI_STATUS_SUCCESS;
}

EXPORT rsmi_status_t rsmi_dev_unique_id_get(uint32_t dv, uint64_t *id) {
	rsmi_status_t s = device_check(dv);
	if (s != RSMI_STATUS_SUCCESS) return s;
	*id = 0x2efe9cea14a6b148ull;
	return RSMI_STATUS_SUCCESS;
}

EXPORT rsmi_status_t rsmi_dev_name_get(uint32_t dv, char *name, size_t len) {
	rsmi_status_t s = device_check(dv);
	if (s != RSMI_STATUS_SUCCESS) return s;
	if (name == NULL || len == 0) return RSMI_STATUS_INVALID_ARGS;
	strncpy(name, "AMD Instinct MI300X (rocm-smi double)", len - 1);
	name[len - 1] = '\0';
	return RSMI_STATUS_SUCCESS;
}

EXPORT rsmi_status_t rsmi_dev_temp_metric_get(uint32_t dv, uint32_t sensor, uint32_t metric, int64_t *t) {
	rsmi_status_t s = device_check(dv);
	if (s != RSMI_STATUS_SUCCESS) return s;
	(void)metric;
	*t = 45000 + (int64_t)sensor * 1000; /* millidegrees */
	return RSMI_STATUS_SUCCESS;
}

EXPORT rsmi_status_t rsmi_dev_power_ave_get(uint32_t dv, uint32_t sensor, uint64_t *p) {
	rsmi_status_t s = device_check(dv);
	if (s != RSMI_STATUS_SUCCESS) return s;
	(void)sensor;
	*p = 540000000; /* µW */
	return RSMI_STATUS_SUCCESS;
}

EXPORT rsmi_status_t rsmi_dev_busy_percent_get(uint32_t dv, uint32_t *pct) {
	rsmi_status_t s = device_check(dv);
	if (s != RSMI_STATUS_SUCCESS) return s;
	*pct = 37;
	return RSMI_STATUS_SUCCESS;
}

EXPORT rsmi_status_t rsmi_dev_memory_usage_get(uint32_t dv, uint32_t type, uint64_t *used) {
	rsmi_status_t s = device_check(dv);
	if (s != RSMI_STATUS_SUCCESS) return s;
	(void)type;
	*used = 297054208;
	return RSMI_STATUS_SUCCESS;
}

EXPORT rsmi_status_t rsmi_dev_memory_total_get(uint32_t dv, uint32_t type, uint64_t *total) {
	rsmi_status_t s = device_check(dv);
	if (s != RSMI_STATUS_SUCCESS) return s;
	(void)type;
	*total = 206141652992ull;
	return RSMI_STATUS_SUCCESS;
}

#if RSMI_DOUBLE_POWER_GET
EXPORT rsmi_status_t rsmi_dev_power_get(uint32_t dv, uint64_t *power, uint32_t *type) {
	rsmi_status_t s = device_check(dv);
	if (s != RSMI_STATUS_SUCCESS) return s;
	*power = 540000000;
	*type = 0;
	return RSMI_STATUS_SUCCESS;
}
#endif

EXPORT rsmi_status_t rsmi_dev_pci_bandwidth_get(uint32_t dv, rsmi_pcie_bandwidth_t *b) {
	rsmi_status_t s = device_check(dv);
	if (s != RSMI_STATUS_SUCCESS) return s;
	rsmi_pcie_bandwidth_t v;
	memset(&v, 0, sizeof v);
#if RSMI_DOUBLE_ABI == 6
	v.transfer_rate.has_deep_sleep = true;
#endif
	v.transfer_rate.num_supported = 3;
	v.transfer_rate.current = 2;
	v.transfer_rate.frequency[0] = 2500000000ull;
	v.transfer_rate.frequency[1] = 8000000000ull;
	v.transfer_rate.frequency[2] = 16000000000ull;
	v.lanes[0] = 1;
	v.lanes[1] = 8;
	v.lanes[2] = 16;
	/* Every byte of the struct, as a struct assignment in the real library may write. */
	memcpy(b, &v, sizeof v);
	return RSMI_STATUS_SUCCESS;
}

EXPORT rsmi_status_t rsmi_dev_pci_replay_counter_get(uint32_t dv, uint64_t *count) {
	rsmi_status_t s = device_check(dv);
	if (s != RSMI_STATUS_SUCCESS) return s;
	*count = 7;
	return RSMI_STATUS_SUCCESS;
}

EXPORT rsmi_status_t rsmi_dev_ecc_count_get(uint32_t dv, uint64_t block, rsmi_error_count_t *ec) {
	rsmi_status_t s = device_check(dv);
	if (s != RSMI_STATUS_SUCCESS) return s;
	if (block != 1) return RSMI_STATUS_NOT_SUPPORTED; /* UMC only */
	ec->correctable_err = 3;
	ec->uncorrectable_err = 1;
	return RSMI_STATUS_SUCCESS;
}

EXPORT rsmi_status_t rsmi_event_notification_init(uint32_t dv) {
	rsmi_status_t s = device_check(dv);
	if (s != RSMI_STATUS_SUCCESS) return s;
	events_queued = EVENTS_QUEUED;
	events_taken = 0;
	return RSMI_STATUS_SUCCESS;
}

EXPORT rsmi_status_t rsmi_event_notification_mask_set(uint32_t dv, uint64_t mask) {
	(void)mask;
	return device_check(dv);
}

EXPORT rsmi_status_t rsmi_event_notification_get(int timeout_ms, uint32_t *num_elem, rsmi_evt_notification_data_t *data) {
	(void)timeout_ms;
	if (num_elem == NULL || data == NULL || *num_elem == 0) return RSMI_STATUS_INVALID_ARGS;
	uint32_t room = *num_elem;
	*num_elem = 0;
	while (*num_elem < room && events_taken < events_queued) {
		rsmi_evt_notification_data_t *d = &data[*num_elem];
		memset(d, 0, sizeof *d);
		d->dv_ind = 0;
		d->event = EVENT_TYPES[events_taken];
		strncpy(d->message, EVENT_MESSAGES[events_taken], sizeof d->message - 1);
		events_taken++;
		(*num_elem)++;
	}
	return *num_elem == 0 ? RSMI_STATUS_NO_DATA : RSMI_STATUS_SUCCESS;
}

EXPORT rsmi_status_t rsmi_event_notification_stop(uint32_t dv) {
	rsmi_status_t s = device_check(dv);
	if (s != RSMI_STATUS_SUCCESS) return s;
	events_queued = 0;
	events_taken = 0;
	return RSMI_STATUS_SUCCESS;
}
