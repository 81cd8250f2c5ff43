fn main() {
    let args: Vec<String> = std::env::args().collect();
    let text = if args[1] == "gen" {
        let t = sfbpatch_topology::generate(args[2].parse().unwrap(), 7);
        if args.len() > 3 { println!("{t}"); }
        t
    } else {
        std::fs::read_to_string(&args[1]).unwrap()
    };
    match sfbpatch_topology::load(&text, &args[1]) {
        Ok(d) => for p in &d.pools { println!("{} {} {:?} {} {}\\{} ao={} stores={:?} coll={:?} {} m={:?}", p.fqdn, p.site, p.edition, p.machines.len(), p.backend.sql_server_fqdn, p.backend.sql_instance.as_str(), p.backend.always_on, p.backend.stores, p.backend.collocated_stores, p.database_update, p.backend.mirroring) },
        Err(e) => println!("{e}"),
    }
}
