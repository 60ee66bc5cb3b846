//! topocheck on a generated topology of 10,000 members (1,000 stores of 10)
//! across 10 regions: parsing, checking, and the whole pipeline.
//! Run: `cargo bench -p switchyard-topology --bench topocheck`.

use criterion::{criterion_main, Criterion};
use std::hint::black_box;
use switchyard_topology::generate::large_topology;
use switchyard_topology::{check, check_text, human, json, parse_source, CheckOptions};

fn bench(c: &mut Criterion) {
    let text = large_topology(1000, 10);
    let opts = CheckOptions::default();
    let mut g = c.benchmark_group("10k-members-10-regions");
    g.sample_size(20);
    g.bench_function("parse", |b| {
        b.iter(|| parse_source("large.toml", black_box(&text)).unwrap())
    });
    let parsed = parse_source("large.toml", &text).unwrap();
    g.bench_function("check", |b| b.iter(|| check(black_box(&parsed), &opts)));
    g.bench_function("parse+check+render-json", |b| {
        b.iter(|| {
            let r = check_text("large.toml", black_box(&text), &opts);
            json::render(std::slice::from_ref(&r))
        })
    });
    // One finding forces the source map to be built and a snippet rendered.
    let bad = {
        let at = text
            .rfind("region = \"r9\"")
            .expect("generated text has r9");
        format!(
            "{}region = \"r99\"{}",
            &text[..at],
            &text[at + "region = \"r9\"".len()..]
        )
    };
    g.bench_function("parse+check+render-human/one-finding", |b| {
        b.iter(|| {
            let r = check_text("large.toml", black_box(&bad), &opts);
            assert_eq!(r.diagnostics.len(), 1);
            human::render(std::slice::from_ref(&r), false)
        })
    });
    g.finish();
}

// criterion_group! generates an undocumented `pub fn benches`.
#[allow(missing_docs)]
mod group {
    criterion::criterion_group!(benches, super::bench);
}
use group::benches;
criterion_main!(benches);
