mod descriptor;
fn main() {}
