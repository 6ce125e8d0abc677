//! Parsing + validating a generated 1,000-task workflow
//! (`cargo bench -p weft-common --bench parse`). Prints the mean and the
//! fastest of several runs; every task references its needs in expressions,
//! so the ancestor checks are exercised too.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use weft_common::Workflow;

fn generate(tasks: usize) -> String {
    let mut yaml = String::from("name: generated\ninput:\n  size: 3\ntasks:\n");
    for i in 0..tasks {
        let _ = writeln!(yaml, "  t{i}:\n    action: echo");
        if i > 0 {
            let mut needs = vec![format!("t{}", i - 1)];
            if i / 2 < i - 1 {
                needs.push(format!("t{}", i / 2));
            }
            let _ = writeln!(yaml, "    needs: [{}]", needs.join(", "));
            let _ = writeln!(
                yaml,
                "    input: {{ v: \"{{{{ tasks.t{}.result }}}}\", n: \"{{{{ input.size }}}}\" }}",
                i - 1
            );
        }
        if i % 10 == 0 {
            let _ = writeln!(
                yaml,
                "    with_items: \"{{{{ range(input.size) | list }}}}\"\n    concurrency: 2\n    retry: {{ attempts: 3, delay: 1s }}\n    timeout: 30s"
            );
        }
    }
    yaml
}

fn main() {
    let quick = !std::env::args().any(|a| a == "--bench");
    let yaml = generate(1_000);
    let rounds = if quick { 2 } else { 20 };
    let mut times = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let started = Instant::now();
        let workflow = Workflow::parse(&yaml, "generated.yaml").unwrap_or_else(|d| panic!("{d}"));
        times.push(started.elapsed());
        assert_eq!(workflow.tasks().count(), 1_000);
    }
    let mean = times.iter().sum::<Duration>() / u32::try_from(rounds).unwrap_or(1);
    let best = times.iter().min().copied().unwrap_or_default();
    println!(
        "parse+validate 1000 tasks ({} KiB): mean {:.1} ms, best {:.1} ms over {rounds} runs",
        yaml.len() / 1024,
        mean.as_secs_f64() * 1000.0,
        best.as_secs_f64() * 1000.0
    );
}
