fn main() {
    println!("cllm");
}
