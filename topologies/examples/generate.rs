//! Print a generated, passing topology to stdout, for timing `topocheck`
//! end to end: `cargo run --release -p switchyard-topology --example generate -- 1000 10 > large.toml`
//! (1,000 stores of 10 members = 10,000 members, across 10 regions).

fn main() {
    let mut args = std::env::args().skip(1);
    let stores = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let regions = args.next().and_then(|a| a.parse().ok()).unwrap_or(10);
    print!(
        "{}",
        switchyard_topology::generate::large_topology(stores, regions)
    );
}
