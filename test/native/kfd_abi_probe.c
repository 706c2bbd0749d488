/*
 * Conformance probe: prints the ABI of the system's <linux/kfd_ioctl.h> as JSON, in the shape
 * of `svmrt kfd abi --json`: {"ioctls": {NAME: number}, "structs": {NAME: {"size": n,
 * "fields": {FIELD: offset}}}}. Names lose the AMDKFD_IOC_ / kfd_ioctl_ prefixes.
 * Built at test time (test/native/compile.ts) with a stand-in <drm/drm.h> on the include path.
 */
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <linux/kfd_ioctl.h>

static int first;

static void ioctl_print(const char *name, unsigned long nr) {
	printf("%s\"%s\": %lu", first ? "" : ", ", name, nr);
	first = 0;
}

#define IOCTL(name) ioctl_print(#name, (unsigned long)AMDKFD_IOC_##name)

#define STRUCT_BEGIN(json, type) \
	do { \
		printf("%s\"%s\": {\"size\": %zu, \"fields\": {", first ? "" : ", ", json, sizeof(type)); \
		first = 0; \
		int field_first = 1; \
		(void)field_first
#define FIELD(type, f) \
		printf("%s\"%s\": %zu", field_first ? "" : ", ", #f, offsetof(type, f)); \
		field_first = 0
#define STRUCT_END() \
		printf("}}"); \
	} while (0)

static void constant_print(const char *name, unsigned long long v) {
	printf("%s\"%s\": %llu", first ? "" : ", ", name, v);
	first = 0;
}

/* Every constant fits 32 bits; the cast keeps (1 << 31) positive. */
#define CONSTANT(name) constant_print(#name, (unsigned long long)(unsigned int)(name))

/* `kfd_abi_probe constants`: the header's constants, names as in the header. */
static int constants_print(void) {
	printf("{");
	first = 1;
	CONSTANT(KFD_IOCTL_MAJOR_VERSION);
	CONSTANT(KFD_IOCTL_MINOR_VERSION);
	CONSTANT(KFD_IOC_ALLOC_MEM_FLAGS_VRAM);
	CONSTANT(KFD_IOC_ALLOC_MEM_FLAGS_GTT);
	CONSTANT(KFD_IOC_ALLOC_MEM_FLAGS_USERPTR);
	CONSTANT(KFD_IOC_ALLOC_MEM_FLAGS_DOORBELL);
	CONSTANT(KFD_IOC_ALLOC_MEM_FLAGS_MMIO_REMAP);
	CONSTANT(KFD_IOC_ALLOC_MEM_FLAGS_WRITABLE);
	CONSTANT(KFD_IOC_ALLOC_MEM_FLAGS_EXECUTABLE);
	CONSTANT(KFD_IOC_ALLOC_MEM_FLAGS_PUBLIC);
	CONSTANT(KFD_IOC_ALLOC_MEM_FLAGS_NO_SUBSTITUTE);
	CONSTANT(KFD_IOC_ALLOC_MEM_FLAGS_AQL_QUEUE_MEM);
	CONSTANT(KFD_IOC_ALLOC_MEM_FLAGS_COHERENT);
	CONSTANT(KFD_IOC_ALLOC_MEM_FLAGS_UNCACHED);
	CONSTANT(KFD_IOCTL_SVM_OP_SET_ATTR);
	CONSTANT(KFD_IOCTL_SVM_OP_GET_ATTR);
	CONSTANT(KFD_IOCTL_SVM_LOCATION_SYSMEM);
	CONSTANT(KFD_IOCTL_SVM_LOCATION_UNDEFINED);
	CONSTANT(KFD_IOCTL_SVM_ATTR_PREFERRED_LOC);
	CONSTANT(KFD_IOCTL_SVM_ATTR_PREFETCH_LOC);
	CONSTANT(KFD_IOCTL_SVM_ATTR_ACCESS);
	CONSTANT(KFD_IOCTL_SVM_ATTR_ACCESS_IN_PLACE);
	CONSTANT(KFD_IOCTL_SVM_ATTR_NO_ACCESS);
	CONSTANT(KFD_IOCTL_SVM_ATTR_SET_FLAGS);
	CONSTANT(KFD_IOCTL_SVM_ATTR_CLR_FLAGS);
	CONSTANT(KFD_IOCTL_SVM_ATTR_GRANULARITY);
	CONSTANT(KFD_IOCTL_SVM_FLAG_HOST_ACCESS);
	CONSTANT(KFD_IOCTL_SVM_FLAG_COHERENT);
	CONSTANT(KFD_IOCTL_SVM_FLAG_HIVE_LOCAL);
	CONSTANT(KFD_IOCTL_SVM_FLAG_GPU_RO);
	CONSTANT(KFD_IOCTL_SVM_FLAG_GPU_EXEC);
	CONSTANT(KFD_IOCTL_SVM_FLAG_GPU_READ_MOSTLY);
	CONSTANT(KFD_IOCTL_SVM_FLAG_GPU_ALWAYS_MAPPED);
	CONSTANT(KFD_SMI_EVENT_VMFAULT);
	CONSTANT(KFD_SMI_EVENT_THERMAL_THROTTLE);
	CONSTANT(KFD_SMI_EVENT_GPU_PRE_RESET);
	CONSTANT(KFD_SMI_EVENT_GPU_POST_RESET);
	CONSTANT(KFD_SMI_EVENT_MIGRATE_START);
	CONSTANT(KFD_SMI_EVENT_MIGRATE_END);
	CONSTANT(KFD_SMI_EVENT_PAGE_FAULT_START);
	CONSTANT(KFD_SMI_EVENT_PAGE_FAULT_END);
	CONSTANT(KFD_SMI_EVENT_QUEUE_EVICTION);
	CONSTANT(KFD_SMI_EVENT_QUEUE_RESTORE);
	CONSTANT(KFD_SMI_EVENT_UNMAP_FROM_GPU);
	CONSTANT(KFD_SMI_EVENT_ALL_PROCESS);
	CONSTANT(KFD_SMI_EVENT_MSG_SIZE);
	CONSTANT(KFD_MIGRATE_TRIGGER_PREFETCH);
	CONSTANT(KFD_MIGRATE_TRIGGER_PAGEFAULT_GPU);
	CONSTANT(KFD_MIGRATE_TRIGGER_PAGEFAULT_CPU);
	CONSTANT(KFD_MIGRATE_TRIGGER_TTM_EVICTION);
	CONSTANT(KFD_QUEUE_EVICTION_TRIGGER_SVM);
	CONSTANT(KFD_QUEUE_EVICTION_TRIGGER_USERPTR);
	CONSTANT(KFD_QUEUE_EVICTION_TRIGGER_TTM);
	CONSTANT(KFD_QUEUE_EVICTION_TRIGGER_SUSPEND);
	CONSTANT(KFD_QUEUE_EVICTION_CRIU_CHECKPOINT);
	CONSTANT(KFD_QUEUE_EVICTION_CRIU_RESTORE);
	CONSTANT(KFD_SVM_UNMAP_TRIGGER_MMU_NOTIFY);
	CONSTANT(KFD_SVM_UNMAP_TRIGGER_MMU_NOTIFY_MIGRATE);
	CONSTANT(KFD_SVM_UNMAP_TRIGGER_UNMAP_FROM_CPU);
	printf("}\n");
	return 0;
}

int main(int argc, char **argv) {
	if (argc > 1 && strcmp(argv[1], "constants") == 0) return constants_print();
	printf("{\"ioctls\": {");
	first = 1;
	IOCTL(GET_VERSION);
	IOCTL(GET_PROCESS_APERTURES_NEW);
	IOCTL(ACQUIRE_VM);
	IOCTL(ALLOC_MEMORY_OF_GPU);
	IOCTL(FREE_MEMORY_OF_GPU);
	IOCTL(MAP_MEMORY_TO_GPU);
	IOCTL(UNMAP_MEMORY_FROM_GPU);
	IOCTL(SMI_EVENTS);
	IOCTL(SVM);
	IOCTL(SET_XNACK_MODE);
	IOCTL(AVAILABLE_MEMORY);
	printf("}, \"structs\": {");
	first = 1;

	STRUCT_BEGIN("get_version_args", struct kfd_ioctl_get_version_args);
	FIELD(struct kfd_ioctl_get_version_args, major_version);
	FIELD(struct kfd_ioctl_get_version_args, minor_version);
	STRUCT_END();

	STRUCT_BEGIN("kfd_process_device_apertures", struct kfd_process_device_apertures);
	FIELD(struct kfd_process_device_apertures, lds_base);
	FIELD(struct kfd_process_device_apertures, lds_limit);
	FIELD(struct kfd_process_device_apertures, scratch_base);
	FIELD(struct kfd_process_device_apertures, scratch_limit);
	FIELD(struct kfd_process_device_apertures, gpuvm_base);
	FIELD(struct kfd_process_device_apertures, gpuvm_limit);
	FIELD(struct kfd_process_device_apertures, gpu_id);
	FIELD(struct kfd_process_device_apertures, pad);
	STRUCT_END();

	STRUCT_BEGIN("get_process_apertures_new_args", struct kfd_ioctl_get_process_apertures_new_args);
	FIELD(struct kfd_ioctl_get_process_apertures_new_args, kfd_process_device_apertures_ptr);
	FIELD(struct kfd_ioctl_get_process_apertures_new_args, num_of_nodes);
	FIELD(struct kfd_ioctl_get_process_apertures_new_args, pad);
	STRUCT_END();

	STRUCT_BEGIN("acquire_vm_args", struct kfd_ioctl_acquire_vm_args);
	FIELD(struct kfd_ioctl_acquire_vm_args, drm_fd);
	FIELD(struct kfd_ioctl_acquire_vm_args, gpu_id);
	STRUCT_END();

	STRUCT_BEGIN("alloc_memory_of_gpu_args", struct kfd_ioctl_alloc_memory_of_gpu_args);
	FIELD(struct kfd_ioctl_alloc_memory_of_gpu_args, va_addr);
	FIELD(struct kfd_ioctl_alloc_memory_of_gpu_args, size);
	FIELD(struct kfd_ioctl_alloc_memory_of_gpu_args, handle);
	FIELD(struct kfd_ioctl_alloc_memory_of_gpu_args, mmap_offset);
	FIELD(struct kfd_ioctl_alloc_memory_of_gpu_args, gpu_id);
	FIELD(struct kfd_ioctl_alloc_memory_of_gpu_args, flags);
	STRUCT_END();

	STRUCT_BEGIN("free_memory_of_gpu_args", struct kfd_ioctl_free_memory_of_gpu_args);
	FIELD(struct kfd_ioctl_free_memory_of_gpu_args, handle);
	STRUCT_END();

	STRUCT_BEGIN("map_memory_to_gpu_args", struct kfd_ioctl_map_memory_to_gpu_args);
	FIELD(struct kfd_ioctl_map_memory_to_gpu_args, handle);
	FIELD(struct kfd_ioctl_map_memory_to_gpu_args, device_ids_array_ptr);
	FIELD(struct kfd_ioctl_map_memory_to_gpu_args, n_devices);
	FIELD(struct kfd_ioctl_map_memory_to_gpu_args, n_success);
	STRUCT_END();

	STRUCT_BEGIN("unmap_memory_from_gpu_args", struct kfd_ioctl_unmap_memory_from_gpu_args);
	FIELD(struct kfd_ioctl_unmap_memory_from_gpu_args, handle);
	FIELD(struct kfd_ioctl_unmap_memory_from_gpu_args, device_ids_array_ptr);
	FIELD(struct kfd_ioctl_unmap_memory_from_gpu_args, n_devices);
	FIELD(struct kfd_ioctl_unmap_memory_from_gpu_args, n_success);
	STRUCT_END();

	STRUCT_BEGIN("smi_events_args", struct kfd_ioctl_smi_events_args);
	FIELD(struct kfd_ioctl_smi_events_args, gpuid);
	FIELD(struct kfd_ioctl_smi_events_args, anon_fd);
	STRUCT_END();

	STRUCT_BEGIN("svm_attribute", struct kfd_ioctl_svm_attribute);
	FIELD(struct kfd_ioctl_svm_attribute, type);
	FIELD(struct kfd_ioctl_svm_attribute, value);
	STRUCT_END();

	STRUCT_BEGIN("svm_args", struct kfd_ioctl_svm_args);
	FIELD(struct kfd_ioctl_svm_args, start_addr);
	FIELD(struct kfd_ioctl_svm_args, size);
	FIELD(struct kfd_ioctl_svm_args, op);
	FIELD(struct kfd_ioctl_svm_args, nattr);
	FIELD(struct kfd_ioctl_svm_args, attrs);
	STRUCT_END();

	STRUCT_BEGIN("set_xnack_mode_args", struct kfd_ioctl_set_xnack_mode_args);
	FIELD(struct kfd_ioctl_set_xnack_mode_args, xnack_enabled);
	STRUCT_END();

	STRUCT_BEGIN("get_available_memory_args", struct kfd_ioctl_get_available_memory_args);
	FIELD(struct kfd_ioctl_get_available_memory_args, available);
	FIELD(struct kfd_ioctl_get_available_memory_args, gpu_id);
	FIELD(struct kfd_ioctl_get_available_memory_args, pad);
	STRUCT_END();

	printf("}}\n");
	return 0;
}
