// Rust names: legacy and v0 mangling, demangled without hash or crate id.
#[inline(never)]
fn work(v: &mut Vec<u64>, n: u64) -> u64 { // @work
    v.push(n);
    v.iter().sum()
}

fn main() {
    let mut v = Vec::new();
    let r = work(&mut v, std::env::args().count() as u64);
    std::process::exit((r == 12345) as i32);
}
