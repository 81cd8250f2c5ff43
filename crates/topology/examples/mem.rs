fn hwm() -> String { std::fs::read_to_string("/proc/self/status").unwrap().lines().filter(|l| l.starts_with("VmHWM") || l.starts_with("VmRSS")).collect::<Vec<_>>().join(" ") }
fn main() {
    let n: usize = std::env::args().nth(1).unwrap().parse().unwrap();
    let stage: u32 = std::env::args().nth(2).unwrap().parse().unwrap();
    let text = sfbpatch_topology::generate(n, 2024);
    println!("after generate: {}", hwm());
    if stage >= 1 {
        let doc = roxmltree::Document::parse(&text).unwrap();
        println!("after roxmltree: {} nodes {}", hwm(), doc.descendants().count());
        drop(doc);
    }
    if stage >= 2 {
        let t = sfbpatch_topology::read_topology(&text, "x").unwrap();
        println!("after read: {}", hwm());
        let d = sfbpatch_topology::derive(&t).unwrap();
        println!("after derive: {} {}", hwm(), d.pools.len());
    }
}
