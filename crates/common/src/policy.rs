//! Worker policies as users read about them: an action a pool's workers
//! have but refuse (`weft worker --actions`; `shell` unless listed). One
//! wording for the executors' error of an attempt nobody will run and
//! for the warning of `validate` and `submit`.

/// Why no live worker of `pool` runs `action` although one has it:
/// `accepted` is what the pool's live workers do run.
#[must_use]
pub fn refused_by_policy(pool: &str, action: &str, accepted: &[String]) -> String {
    let runs = if accepted.is_empty() {
        "nothing advertised".to_owned()
    } else {
        accepted.join(", ")
    };
    format!(
        "action `{action}` is refused by the policy of pool `{pool}`'s live workers \
         (they run only: {runs}); start a worker that runs it with \
         `weft worker --queue {pool} --actions {action},…`"
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_words_name_the_pool_the_action_and_the_flag() {
        assert_eq!(
            super::refused_by_policy("default", "shell", &["echo".into(), "noop".into()]),
            "action `shell` is refused by the policy of pool `default`'s live workers \
             (they run only: echo, noop); start a worker that runs it with \
             `weft worker --queue default --actions shell,…`"
        );
    }
}
