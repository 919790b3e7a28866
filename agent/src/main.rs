mod probe;

fn main() {}
