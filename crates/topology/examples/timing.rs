use std::time::Instant;
fn main() {
    for n in [1000usize, 5000, 10000] {
        let text = sfbpatch_topology::generate(n, 2024);
        let mut best = [f64::MAX; 3];
        for _ in 0..5 {
            let t0 = Instant::now();
            let doc = roxmltree::Document::parse(&text).unwrap();
            let t1 = Instant::now();
            drop(doc);
            let t = sfbpatch_topology::read_topology(&text, "x").unwrap();
            let t2 = Instant::now();
            let d = sfbpatch_topology::derive(&t).unwrap();
            let t3 = Instant::now();
            assert_eq!(d.pools.len(), n);
            best[0] = best[0].min((t1 - t0).as_secs_f64() * 1e3);
            best[1] = best[1].min((t2 - t1).as_secs_f64() * 1e3);
            best[2] = best[2].min((t3 - t2).as_secs_f64() * 1e3);
        }
        println!("{n}: roxmltree parse {:.1} ms, read_topology {:.1} ms, derive {:.1} ms", best[0], best[1], best[2]);
    }
}
