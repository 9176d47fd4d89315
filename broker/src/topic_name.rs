//! Kafka's topic name rule: 1–249 characters of `[a-zA-Z0-9._-]`, not `.`
//! or `..`. (249 leaves room for `-<partition>` and suffixes in a
//! 255-byte directory name.)

pub const TOPIC_NAME_BYTES_MAX: usize = 249;

pub fn validate(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("topic name is empty".into());
    }
    if name == "." || name == ".." {
        return Err(format!("topic name '{name}' is not allowed"));
    }
    if name.len() > TOPIC_NAME_BYTES_MAX {
        return Err(format!("topic name is {} characters, the limit is {TOPIC_NAME_BYTES_MAX}", name.len()));
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
        return Err(format!("topic name '{name}' contains '{c}'; allowed: ASCII letters, digits, '.', '_', '-'"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_kafka_rules() {
        assert!(validate("orders.v1_2-x").is_ok());
        for bad in ["", ".", "..", "a b", "a/b", "ü", &"x".repeat(250)] {
            assert!(validate(bad).is_err(), "{bad}");
        }
        assert!(validate(&"x".repeat(249)).is_ok());
    }
}
