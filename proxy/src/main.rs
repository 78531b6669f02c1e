fn main() {
    println!("lameduck {}", env!("CARGO_PKG_VERSION"));
}
