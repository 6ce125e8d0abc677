//! TLS failures in words a user can act on.
//!
//! Both drivers (sqlx, lapin) report a refused server certificate with
//! rustls's words, e.g. `invalid peer certificate: UnknownIssuer`: true,
//! but it names neither the cause nor the setting that fixes it.

/// The cause of a failed connection, reworded when it is a refused server
/// certificate; `trust` says how to trust a private CA (the setting's
/// name). Any other cause is returned as it is.
#[must_use]
pub fn tls_cause(cause: &str, trust: &str) -> String {
    if !cause.contains("invalid peer certificate") {
        return cause.to_owned();
    }
    if cause.contains("UnknownIssuer") {
        format!(
            "TLS: the server's certificate is not signed by a CA this client trusts \
             ({cause}); for a private CA, {trust}"
        )
    } else if cause.contains("not valid for name") || cause.contains("NotValidForName") {
        format!(
            "TLS: the server's certificate does not name the host in the URL ({cause}); \
             connect by a name the certificate holds"
        )
    } else {
        format!("TLS: the server's certificate was refused ({cause})")
    }
}

#[cfg(test)]
mod tests {
    use super::tls_cause;

    #[test]
    fn a_refused_certificate_says_why_and_what_to_set() {
        let said = tls_cause("invalid peer certificate: UnknownIssuer", "give `x`");
        assert!(said.starts_with("TLS: the server's certificate is not signed"));
        assert!(said.ends_with("for a private CA, give `x`"));
        let said = tls_cause(
            "invalid peer certificate: certificate not valid for name \"127.0.0.1\"; certificate is only valid for DnsName(\"localhost\")",
            "",
        );
        assert!(said.contains("does not name the host"), "{said}");
        assert_eq!(tls_cause("connection refused", "x"), "connection refused");
    }
}
