// Float atomic add emulated on `atomic<u32>` bit patterns with a compare-exchange loop, for
// devices without SHADER_FLOAT32_ATOMIC.
alias GradAtomic = atomic<u32>;

fn add_grad(index: u32, value: f32) {
    var old = atomicLoad(&projected_grads[index]);
    loop {
        let result = atomicCompareExchangeWeak(&projected_grads[index], old, bitcast<u32>(bitcast<f32>(old) + value));
        if result.exchanged {
            break;
        }
        old = result.old_value;
    }
}
