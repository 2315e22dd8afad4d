// Credentials for private http(s) remotes, found as curl finds them: a bearer token
// (SLMSTORE_TOKEN or --token-file), the URL's own user:password, or ~/.netrc (--netrc-file).
// They become one Authorization header and a description of where they came from; the secret
// itself is never part of a location, message, log line or state file.

import SLMFormats
import SLMLocalStore
import Foundation

/// The credentials an http(s) request carries, and where they came from.
public struct HTTPCredentials: Sendable {
    /// The Authorization header's value.
    package let authorization: String
    /// Where they came from, for messages: "SLMSTORE_TOKEN", "~/.netrc (machine example.com)".
    public let source: String

    /// Where credentials may come from, in order: a token file, a token (else SLMSTORE_TOKEN),
    /// a netrc file (~/.netrc by default).
    public struct Sources: Sendable {
        /// A bearer token given directly.
        public var token: String?
        /// A file holding a bearer token on one line.
        public var tokenFile: String?
        /// A netrc file to use instead of ~/.netrc.
        public var netrcFile: String?
        /// The environment SLMSTORE_TOKEN and HOME are read from.
        public var environment: [String: String] = ProcessInfo.processInfo.environment
        /// No sources but the environment.
        public init() {}
    }

    /// The credentials for `url`, or nil when no source has any.
    public static func resolve(for url: URL, sources: Sources) throws -> HTTPCredentials? {
        if let path = sources.tokenFile {
            let bytes = try FileSystem.readFile(path, limit: 64 << 10)
            let token = String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            guard !token.isEmpty, !token.contains(where: { $0.isNewline }) else {
                throw SLMError.input(path: path, problem: "a token file must hold one token on one line").remedied(by: .given(.tokenFile))
            }
            return HTTPCredentials(authorization: "Bearer " + token, source: "the token file \(path)")
        }
        if let token = sources.token ?? sources.environment["SLMSTORE_TOKEN"], !token.isEmpty {
            return HTTPCredentials(authorization: "Bearer " + token, source: "SLMSTORE_TOKEN")
        }
        if let fromURL = userInfo(of: url) { return fromURL }
        let home = sources.environment["HOME"] ?? NSHomeDirectory()
        let netrc = sources.netrcFile ?? "\(home)/.netrc"
        if sources.netrcFile != nil || FileSystem.exists(netrc), let host = url.host {
            let text = String(decoding: try FileSystem.readFile(netrc, limit: 1 << 20), as: UTF8.self)
            if let (login, password, entry) = Netrc.lookup(host: host, in: text) {
                let shown = sources.netrcFile ?? "~/.netrc"
                return basic(login, password, source: "\(shown) (\(entry))")
            }
        }
        return nil
    }

    /// The user:password written in the URL itself, if any.
    static func userInfo(of url: URL) -> HTTPCredentials? {
        url.user.map { basic($0.removingPercentEncoding ?? $0, url.password.map { $0.removingPercentEncoding ?? $0 } ?? "",
                             source: "the user:password in the remote URL") }
    }

    static func basic(_ user: String, _ password: String, source: String) -> HTTPCredentials {
        HTTPCredentials(authorization: "Basic " + Data("\(user):\(password)".utf8).base64EncodedString(), source: source)
    }

    /// `location` without any user:password part, for everything a person or a file sees.
    public static func redact(_ location: String) -> String {
        guard let scheme = location.range(of: "://"), let at = location[scheme.upperBound...].firstIndex(of: "@"),
              !location[scheme.upperBound..<at].contains("/") else { return location }
        return String(location[..<scheme.upperBound]) + String(location[location.index(after: at)...])
    }
}

/// The .netrc format as curl and ftp read it: whitespace-separated tokens, `machine NAME` or
/// `default` entries with `login` and `password`, `macdef` bodies skipped up to a blank line.
enum Netrc {
    static func lookup(host: String, in text: String) -> (String, String, String)? {
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false)[...]
        var tokens: [String] = []
        while let line = lines.popFirst() {
            let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" }).map(String.init)
            if let m = words.firstIndex(of: "macdef") {
                tokens += words[..<m]
                while let body = lines.popFirst(), !body.trimmingCharacters(in: .whitespaces).isEmpty {}
                continue
            }
            tokens += words
        }
        var i = 0
        var fallback: (String, String, String)?
        while i < tokens.count {
            var name: String?
            if tokens[i] == "machine", i + 1 < tokens.count { name = tokens[i + 1]; i += 2 }
            else if tokens[i] == "default" { name = nil; i += 1 }
            else { i += 1; continue }
            var login = "", password = ""
            while i < tokens.count, tokens[i] != "machine", tokens[i] != "default" {
                if i + 1 < tokens.count {
                    if tokens[i] == "login" { login = tokens[i + 1] } else if tokens[i] == "password" { password = tokens[i + 1] }
                }
                i += 2
            }
            if let name, name.lowercased() == host.lowercased() { return (login, password, "machine \(name)") }
            if name == nil, fallback == nil { fallback = (login, password, "default") }
        }
        return fallback
    }
}
