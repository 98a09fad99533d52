//! Shard assignment: stable, complete, groups kept together, indexes from
//! the scheduler's environment.

use super::*;
use proptest::prelude::*;
use std::path::Path;

fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
    move |name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    }
}

#[test]
fn parses_explicit_and_scheduler_indexes() {
    assert_eq!(
        Shard::parse("2/4", env(&[])),
        Ok(Shard { index: 2, count: 4 })
    );
    assert_eq!(
        Shard::parse("/4", env(&[("JOB_COMPLETION_INDEX", "3")])),
        Ok(Shard { index: 3, count: 4 })
    );
    let slurm = [
        ("SLURM_ARRAY_TASK_ID", "1"),
        ("SLURM_ARRAY_TASK_COUNT", "3"),
        ("SLURM_ARRAY_TASK_MIN", "0"),
        ("SLURM_ARRAY_TASK_MAX", "2"),
    ];
    assert_eq!(
        Shard::parse("auto", env(&slurm)),
        Ok(Shard { index: 1, count: 3 })
    );
    assert_eq!(
        Shard::parse("/3", env(&slurm)),
        Ok(Shard { index: 1, count: 3 })
    );
    assert!(matches!(
        Shard::parse("/2", env(&slurm)),
        Err(ShardError::Disagrees { .. })
    ));
    // A re-run of shard 2 of 4 alone: COUNT is 1, which is not N.
    let rerun = [
        ("SLURM_ARRAY_TASK_ID", "2"),
        ("SLURM_ARRAY_TASK_COUNT", "1"),
        ("SLURM_ARRAY_TASK_MIN", "2"),
        ("SLURM_ARRAY_TASK_MAX", "2"),
    ];
    assert_eq!(
        Shard::parse("/4", env(&rerun)),
        Ok(Shard { index: 2, count: 4 })
    );
    assert_eq!(
        Shard::parse("auto", env(&rerun)),
        Err(ShardError::PartialArray)
    );
    assert!(matches!(
        Shard::parse("/4", env(&[])),
        Err(ShardError::NoIndex(_))
    ));
    assert!(matches!(
        Shard::parse("auto", env(&[("JOB_COMPLETION_INDEX", "0")])),
        Err(ShardError::NoCount)
    ));
    assert!(matches!(
        Shard::parse("4/4", env(&[])),
        Err(ShardError::OutOfRange { .. })
    ));
    assert!(matches!(
        Shard::parse("0/0", env(&[])),
        Err(ShardError::OutOfRange { .. })
    ));
    for bad in ["", "x/4", "1/y", "3", "1/2/3"] {
        assert!(
            matches!(Shard::parse(bad, env(&[])), Err(ShardError::Syntax(_))),
            "{bad:?}"
        );
    }
}

/// A config with `n` accounts migrating one mailbox each, plus one source
/// feeding two targets and two sources consolidating into one mailbox.
fn config(n: usize, reversed: bool) -> Config {
    let mut order: Vec<usize> = (0..n).collect();
    if reversed {
        order.reverse();
    }
    let mut text = String::new();
    for &i in &order {
        text += &format!("[[source]]\nname = \"s{i}\"\nhost = \"pop.example\"\nusername = \"u{i}\"\npassword = \"p\"\n");
        text += &format!("[[target]]\nname = \"t{i}\"\nhost = \"imap.example\"\nusername = \"u{i}\"\npassword = \"p\"\n");
    }
    for &i in &order {
        text += &format!("[[route]]\nfrom = \"s{i}\"\nto = \"t{i}\"\n");
    }
    // s0 also feeds t1's "Copy"; s2 and s3 both feed t4/"Merged".
    text += "[[route]]\nfrom = \"s0\"\nto = \"t1\"\nmailbox = \"Copy\"\n";
    text += "[[route]]\nfrom = \"s2\"\nto = \"t4\"\nmailbox = \"Merged\"\n";
    text += "[[route]]\nfrom = \"s3\"\nto = \"t4\"\nmailbox = \"Merged\"\n";
    Config::from_str(&text, Path::new("t.toml")).unwrap()
}

/// Route name -> shard index.
fn assignment(config: &Config, count: u32) -> HashMap<String, u32> {
    let mut out = HashMap::new();
    for index in 0..count {
        for i in (Shard { index, count }).routes(config) {
            assert!(
                out.insert(config.routes[i].name.clone(), index).is_none(),
                "route in two shards"
            );
        }
    }
    out
}

#[test]
fn linked_routes_share_a_shard_and_file_order_does_not_matter() {
    let (a, b) = (config(12, false), config(12, true));
    for count in 1..=16 {
        let (sa, sb) = (assignment(&a, count), assignment(&b, count));
        assert_eq!(
            sa.len(),
            a.routes.len(),
            "every route in exactly one shard (N={count})"
        );
        assert_eq!(sa, sb, "stable under reordering (N={count})");
        assert_eq!(sa["s0:t0"], sa["s0:t1:Copy"], "one source, one shard");
        assert_eq!(
            sa["s2:t4:Merged"], sa["s3:t4:Merged"],
            "one mailbox, one shard"
        );
        assert_eq!(
            sa["s2:t2"], sa["s3:t3"],
            "linked through the shared mailbox"
        );
    }
}

#[test]
fn ledger_path_takes_the_shard() {
    let mut c = config(5, false);
    c.ledger_path = "state/ledger-{shard}.db".into();
    apply(&mut c, Some(Shard { index: 1, count: 2 }));
    assert_eq!(c.ledger_path, Path::new("state/ledger-1.db"));
}

proptest! {
    #[test]
    fn every_route_in_exactly_one_shard(n in 1usize..40, count in 1u32..17) {
        let c = config(n.max(5), false);
        let a = assignment(&c, count);
        prop_assert_eq!(a.len(), c.routes.len());
    }
}
