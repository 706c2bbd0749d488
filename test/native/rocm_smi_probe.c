/*
 * Layout probe: prints, as JSON, the sizes and member offsets of the librocm_smi64 structs the
 * rocm-smi binding (runtime/ffi/rocm-smi.ts) passes, as the system's <rocm_smi/rocm_smi.h>
 * lays them out (Debian: librocm-smi-dev), x86-64 natural alignment:
 *
 *   {"header": {"RSMI_MAX_NUM_FREQUENCIES": n, "MAX_EVENT_NOTIFICATION_MSG_SIZE": n,
 *               "structs": {NAME: {"size": n, "fields": {FIELD: offset}}}},
 *    "newest": {...the same for the newest layout, declared below}}
 *
 * "newest" declares the structs of the current upstream header (RSMI_MAX_NUM_FREQUENCIES 33,
 * a first member `bool has_deep_sleep` in rsmi_frequencies_t, MAX_EVENT_NOTIFICATION_MSG_SIZE
 * 96; ROCm/rocm_smi_lib include/rocm_smi/rocm_smi.h), so that the compiler, not arithmetic by
 * hand, gives their sizes and offsets. Built at test time by test/native/compile.ts.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <rocm_smi/rocm_smi.h>

static int first;

#define STRUCT_BEGIN(json, type) \
	do { \
		printf("%s\"%s\": {\"size\": %zu, \"fields\": {", first ? "" : ", ", json, sizeof(type)); \
		first = 0; \
		int field_first = 1; \
		(void)field_first
#define FIELD(json, type, f) \
		printf("%s\"%s\": %zu", field_first ? "" : ", ", json, offsetof(type, f)); \
		field_first = 0
#define STRUCT_END() \
		printf("}}"); \
	} while (0)

/* The newest layout, declared here (see the file comment). */
#define NEWEST_MAX_NUM_FREQUENCIES 33
#define NEWEST_EVENT_MESSAGE_SIZE 96
typedef struct {
	bool has_deep_sleep;
	uint32_t num_supported;
	uint32_t current;
	uint64_t frequency[NEWEST_MAX_NUM_FREQUENCIES];
} newest_frequencies_t;
typedef struct {
	newest_frequencies_t transfer_rate;
	uint32_t lanes[NEWEST_MAX_NUM_FREQUENCIES];
} newest_pcie_bandwidth_t;
typedef struct {
	uint32_t dv_ind;
	uint32_t event;
	char message[NEWEST_EVENT_MESSAGE_SIZE];
} newest_evt_notification_data_t;

int main(void) {
	printf("{\"header\": {\"RSMI_MAX_NUM_FREQUENCIES\": %d, \"MAX_EVENT_NOTIFICATION_MSG_SIZE\": %d, \"structs\": {",
	       (int)RSMI_MAX_NUM_FREQUENCIES, (int)MAX_EVENT_NOTIFICATION_MSG_SIZE);
	first = 1;
	STRUCT_BEGIN("rsmi_frequencies_t", rsmi_frequencies_t);
	FIELD("num_supported", rsmi_frequencies_t, num_supported);
	FIELD("current", rsmi_frequencies_t, current);
	FIELD("frequency", rsmi_frequencies_t, frequency);
	STRUCT_END();
	STRUCT_BEGIN("rsmi_pcie_bandwidth_t", rsmi_pcie_bandwidth_t);
	FIELD("num_supported", rsmi_pcie_bandwidth_t, transfer_rate.num_supported);
	FIELD("current", rsmi_pcie_bandwidth_t, transfer_rate.current);
	FIELD("frequency", rsmi_pcie_bandwidth_t, transfer_rate.frequency);
	FIELD("lanes", rsmi_pcie_bandwidth_t, lanes);
	STRUCT_END();
	STRUCT_BEGIN("rsmi_evt_notification_data_t", rsmi_evt_notification_data_t);
	FIELD("dv_ind", rsmi_evt_notification_data_t, dv_ind);
	FIELD("event", rsmi_evt_notification_data_t, event);
	FIELD("message", rsmi_evt_notification_data_t, message);
	STRUCT_END();
	STRUCT_BEGIN("rsmi_version_t", rsmi_version_t);
	FIELD("major", rsmi_version_t, major);
	FIELD("minor", rsmi_version_t, minor);
	FIELD("patch", rsmi_version_t, patch);
	FIELD("build", rsmi_version_t, build);
	STRUCT_END();
	STRUCT_BEGIN("rsmi_error_count_t", rsmi_error_count_t);
	FIELD("correctable_err", rsmi_error_count_t, correctable_err);
	FIELD("uncorrectable_err", rsmi_error_count_t, uncorrectable_err);
	STRUCT_END();
	printf("}}, \"newest\": {\"RSMI_MAX_NUM_FREQUENCIES\": %d, \"MAX_EVENT_NOTIFICATION_MSG_SIZE\": %d, \"structs\": {",
	       NEWEST_MAX_NUM_FREQUENCIES, NEWEST_EVENT_MESSAGE_SIZE);
	first = 1;
	STRUCT_BEGIN("rsmi_frequencies_t", newest_frequencies_t);
	FIELD("has_deep_sleep", newest_frequencies_t, has_deep_sleep);
	FIELD("num_supported", newest_frequencies_t, num_supported);
	FIELD("current", newest_frequencies_t, current);
	FIELD("frequency", newest_frequencies_t, frequency);
	STRUCT_END();
	STRUCT_BEGIN("rsmi_pcie_bandwidth_t", newest_pcie_bandwidth_t);
	FIELD("num_supported", newest_pcie_bandwidth_t, transfer_rate.num_supported);
	FIELD("current", newest_pcie_bandwidth_t, transfer_rate.current);
	FIELD("frequency", newest_pcie_bandwidth_t, transfer_rate.frequency);
	FIELD("lanes", newest_pcie_bandwidth_t, lanes);
	STRUCT_END();
	STRUCT_BEGIN("rsmi_evt_notification_data_t", newest_evt_notification_data_t);
	FIELD("dv_ind", newest_evt_notification_data_t, dv_ind);
	FIELD("event", newest_evt_notification_data_t, event);
	FIELD("message", newest_evt_notification_data_t, message);
	STRUCT_END();
	printf("}}}\n");
	return 0;
}
