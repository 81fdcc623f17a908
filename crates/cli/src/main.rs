fn main() {
    println!("entryway");
}
