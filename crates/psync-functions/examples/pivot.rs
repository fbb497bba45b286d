//! The trait pivot two ways on the same in-memory data: one `last_seen_struct`
//! over all traits vs one `last_seen` per trait; prints a table and the ratio.
//!
//! `cargo run -p psync-functions --example pivot -- [rows] [traits] [groups]`

use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::datasource::MemTable;
use datafusion::prelude::{SessionConfig, SessionContext};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn main() -> datafusion::error::Result<()> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let rows = args.first().copied().unwrap_or(2_000_000);
    let traits = args.get(1).copied().unwrap_or(20);
    let groups = args.get(2).copied().unwrap_or(500_000);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut fields = vec![Field::new("g", DataType::Utf8, false), Field::new("seq", DataType::Int64, true)];
        fields.extend((0..traits).map(|t| Field::new(format!("t{t}"), DataType::Utf8, true)));
        let schema = Arc::new(Schema::new(fields));
        let batch_rows = 8192;
        let mut parts: Vec<Vec<RecordBatch>> = vec![vec![]; threads];
        let mut made = 0;
        let mut i = 0;
        while made < rows {
            let n = batch_rows.min(rows - made);
            let mut cols: Vec<ArrayRef> = vec![
                Arc::new(StringArray::from_iter_values((0..n).map(|_| format!("g{}", rng.random_range(0..groups))))),
                Arc::new(Int64Array::from_iter_values((0..n).map(|_| rng.random_range(0..1_000_000)))),
            ];
            for _ in 0..traits {
                cols.push(Arc::new(StringArray::from_iter((0..n).map(|_| {
                    rng.random_bool(0.4).then(|| format!("v{}", rng.random_range(0..1000)))
                }))));
            }
            parts[i % threads].push(RecordBatch::try_new(schema.clone(), cols)?);
            made += n;
            i += 1;
        }
        let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(threads));
        psync_functions::register_all(&ctx);
        ctx.register_table("u", Arc::new(MemTable::try_new(schema, parts)?))?;
        let names: Vec<String> = (0..traits).map(|t| format!("t{t}")).collect();
        let per_trait = names.iter().map(|t| format!("last_seen({t}, seq) AS {t}")).collect::<Vec<_>>().join(", ");
        let fields = names.iter().map(|t| format!("'{t}', {t}")).collect::<Vec<_>>().join(", ");
        let queries = [
            ("last_seen_struct (one pass)", format!("SELECT g, last_seen_struct(named_struct({fields}), seq) AS t FROM u GROUP BY g")),
            ("last_seen per trait", format!("SELECT g, {per_trait} FROM u GROUP BY g")),
        ];
        let mut times = vec![];
        for (label, sql) in &queries {
            let mut best = f64::MAX;
            for _ in 0..3 {
                let t = Instant::now();
                let out = ctx.sql(sql).await?.collect().await?;
                let n: usize = out.iter().map(|b| b.num_rows()).sum();
                best = best.min(t.elapsed().as_secs_f64());
                assert!(n > 0);
            }
            times.push(best);
            println!("{label:<30} {best:>8.3}s  ({rows} rows, {traits} traits, {groups} groups, {threads} threads)");
        }
        println!("ratio one-pass / per-trait: {:.2}", times[0] / times[1]);
        Ok(())
    })
}
