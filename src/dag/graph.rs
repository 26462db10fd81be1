//! The stage graph: topological order, cycles, upstream and downstream closures.

use std::collections::BTreeSet;

/// A node of the stage graph: its name and the names of the nodes it depends on.
pub trait Node {
    fn name(&self) -> &str;
    fn deps(&self) -> &[String];
}

/// Indices of `stages` in topological order, ties broken by position (file order). On a cycle,
/// returns the stage names along it, first repeated at the end.
pub fn topo_order<N: Node>(stages: &[N]) -> Result<Vec<usize>, Vec<String>> {
    let idx = |name: &str| stages.iter().position(|s| s.name() == name);
    let n = stages.len();
    let mut state = vec![0u8; n]; // 0 new, 1 on stack, 2 done
    let mut order = Vec::with_capacity(n);

    fn visit<N: Node>(
        i: usize,
        stages: &[N],
        idx: &dyn Fn(&str) -> Option<usize>,
        state: &mut [u8],
        stack: &mut Vec<usize>,
        order: &mut Vec<usize>,
    ) -> Result<(), Vec<String>> {
        match state[i] {
            2 => return Ok(()),
            1 => {
                let start = stack.iter().position(|&s| s == i).unwrap_or(0);
                let mut cycle: Vec<String> = stack[start..]
                    .iter()
                    .map(|&s| stages[s].name().to_string())
                    .collect();
                cycle.push(stages[i].name().to_string());
                return Err(cycle);
            }
            _ => {}
        }
        state[i] = 1;
        stack.push(i);
        for d in stages[i].deps() {
            if let Some(j) = idx(d) {
                visit(j, stages, idx, state, stack, order)?;
            }
        }
        stack.pop();
        state[i] = 2;
        order.push(i);
        Ok(())
    }

    let mut stack = Vec::new();
    for i in 0..n {
        visit(i, stages, &idx, &mut state, &mut stack, &mut order)?;
    }
    Ok(order)
}

/// The named stages and everything upstream of them.
pub fn with_upstream<N: Node>(stages: &[N], targets: &[String]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut todo: Vec<String> = targets.to_vec();
    while let Some(t) = todo.pop() {
        if out.insert(t.clone()) {
            if let Some(s) = stages.iter().find(|s| s.name() == t) {
                todo.extend(s.deps().iter().cloned());
            }
        }
    }
    out
}

/// The named stages and everything downstream of them.
pub fn with_downstream<N: Node>(stages: &[N], targets: &[String]) -> BTreeSet<String> {
    let mut out: BTreeSet<String> = targets.iter().cloned().collect();
    // `stages` is in topological order, so one forward pass suffices.
    for s in stages {
        if s.deps().iter().any(|d| out.contains(d)) {
            out.insert(s.name().to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dag::config::StageConfig;
    use crate::dag::params::Params;

    fn s(name: &str, deps: &[&str]) -> StageConfig {
        StageConfig {
            name: name.into(),
            deps: deps.iter().map(|d| d.to_string()).collect(),
            params: Params::default(),
        }
    }

    #[test]
    fn orders_and_finds_cycles() {
        let st = vec![s("c", &["b"]), s("a", &[]), s("b", &["a"])];
        let o: Vec<_> = topo_order(&st)
            .unwrap()
            .into_iter()
            .map(|i| st[i].name.clone())
            .collect();
        assert_eq!(o, ["a", "b", "c"]);
        let st = vec![s("a", &["c"]), s("b", &["a"]), s("c", &["b"])];
        let cyc = topo_order(&st).unwrap_err();
        assert_eq!(cyc.first(), cyc.last());
        assert_eq!(cyc.len(), 4);
    }

    #[test]
    fn closures() {
        let st = vec![s("a", &[]), s("b", &["a"]), s("c", &["b"]), s("d", &["a"])];
        let up = with_upstream(&st, &["c".into()]);
        assert_eq!(up.into_iter().collect::<Vec<_>>(), ["a", "b", "c"]);
        let down = with_downstream(&st, &["b".into()]);
        assert_eq!(down.into_iter().collect::<Vec<_>>(), ["b", "c"]);
    }
}
