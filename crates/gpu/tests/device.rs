//! Device discovery names the adapter it opened and its limits.
#![cfg(feature = "cubecl")]

mod common;

#[test]
fn the_opened_device_is_named_with_its_limits() {
    let Some(gpu) = common::gpu() else { return };
    let adapter = gpu.adapter();
    println!("device: {adapter}");
    assert!(!adapter.name.is_empty());
    assert!(
        adapter.max_storage_buffer_binding_size >= 1 << 20,
        "{adapter}"
    );
    assert!(
        adapter.max_compute_invocations_per_workgroup >= 64,
        "{adapter}"
    );
    // The opened adapter is one of those discovery lists.
    assert!(
        cllm_gpu::adapters().iter().any(|a| a.name == adapter.name),
        "{adapter} is not among {:?}",
        cllm_gpu::adapters()
    );
}

#[test]
fn a_buffer_comes_back_as_it_went() {
    let Some(gpu) = common::gpu() else { return };
    let data = common::random(1000, 1);
    assert_eq!(gpu.download(&gpu.upload(&data)).unwrap(), data);
    assert_eq!(gpu.download(&gpu.zeros(7)).unwrap(), vec![0.0; 7]);
}
