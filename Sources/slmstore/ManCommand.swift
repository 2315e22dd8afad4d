// `man`: the manual page (roff), generated from the commands' own help, with the exit statuses
// and the environment; what the Debian package installs and what `man -l` shows from a checkout.

import SLMStoreKit

let manCommand = Command(
    name: "man", summary: "Print the manual page (roff) built from every command's help",
    usage: "slmstore man",
    details: "Read it with `slmstore man | man -l -`; the Debian package installs the same page as slmstore(1).",
    spec: OptionSpec()
) { a, _ in
    try requirePositionals(a, "man", min: 0, max: 0, usage: "slmstore man")
    print(manualPage())
    return 0
}

/// The page: NAME, SYNOPSIS, one subsection per command (its --help verbatim), EXIT STATUS,
/// ENVIRONMENT, FILES.
func manualPage() -> String {
    func literal(_ text: String) -> String {
        // Backslashes doubled, and a line starting with . or ' must not read as a request.
        text.split(separator: "\n", omittingEmptySubsequences: false).map { line -> String in
            var l = line.replacingOccurrences(of: "\\", with: "\\\\")
            if l.hasPrefix(".") || l.hasPrefix("'") { l = "\\&" + l }
            return l
        }.joined(separator: "\n")
    }
    var out = [".TH SLMSTORE 1 \"\" \"slmstore \(SLMStoreVersion.current)\" \"User Commands\"",
               ".SH NAME", "slmstore \\- content-addressed store and delta updater for model weights",
               ".SH SYNOPSIS", ".B slmstore", "[\\-\\-store DIR] [\\-\\-no\\-progress] COMMAND [ARGS...]",
               ".SH COMMANDS"]
    for c in commands {
        out += [".SS \(c.name)", ".nf", literal(c.help), ".fi"]
    }
    out += [".SH EXIT STATUS"]
    for (code, meaning) in [("0", "success"), ("1", "general failure (also a disk too full, a refused install directory)"), ("2", "bad arguments"),
                            ("3", "not found"), ("4", "conflict (an existing version with other content, a remote id that changed)"),
                            ("5", "damaged data (verify found damage)"), ("6", "remote failure (HTTP status, a remote's unusable answer)"),
                            ("7", "a store or manifest written by a newer slmstore"),
                            ("8", "release metadata refused (unsigned, replayed, expired, not listing the version)"),
                            ("130", "interrupted (SIGINT or SIGTERM); what was verified is kept")] {
        out += [".TP", code, meaning]
    }
    out += [".SH ENVIRONMENT"]
    for (name, meaning) in [("SLMSTORE_DIR", "the store when --store is not given (else $XDG_DATA_HOME/slmstore or ~/.local/share/slmstore)"),
                            ("SLMSTORE_TOKEN", "bearer token for http(s) remotes (also --token-file)"),
                            ("SLMSTORE_TRUST", "public key files to trust, colon-separated (also --trust)"),
                            ("SLMSTORE_CA_BUNDLE", "PEM CA bundle for https (also --cacert)"),
                            ("SLMSTORE_CLIENT_CERT, SLMSTORE_CLIENT_KEY", "TLS client certificate and key (also --cert, --key)"),
                            ("HTTPS_PROXY, HTTP_PROXY, NO_PROXY", "proxies, as curl reads them"),
                            ("AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN", "S3 credentials"),
                            ("AWS_PROFILE, AWS_SHARED_CREDENTIALS_FILE, AWS_CONFIG_FILE", "S3 credentials and region from the shared files"),
                            ("AWS_REGION, AWS_DEFAULT_REGION, AWS_ENDPOINT_URL", "S3 region and endpoint (also --endpoint)"),
                            ("SLMSTORE_CONFIG", "the user config (else $XDG_CONFIG_HOME/slmstore/config.json or ~/.config/slmstore/config.json): {\"store\": DIR, \"defaults\": {\"*\": [global options], COMMAND: [options]}}; typed options win"),
                            ("HOME, XDG_DATA_HOME, XDG_CONFIG_HOME", "where the default store, the user config and ~/.netrc are"),
                            ("SLMSTORE_MODEL, SLMSTORE_OLD_VERSION, SLMSTORE_NEW_VERSION, SLMSTORE_INSTALL_DIR, SLMSTORE_DEVICE_ID",
                             "set by sync for --on-update and --health-check commands")] {
        out += [".TP", ".B \(name)", meaning]
    }
    out += [".SH FILES", ".TP", "~/.config/slmstore/config.json", "the user's default store and default options per command",
            ".TP", "/etc/slmstore/INSTANCE.conf", "settings of slmstore-sync@INSTANCE.service",
            ".TP", "/var/lib/slmstore/INSTANCE", "the installed models of that instance",
            ".SH SEE ALSO", "systemctl(1), journalctl(1); Format.md for the byte formats"]
    return out.joined(separator: "\n")
}
