// Where a device's reports go, for the sync daemon and `pull --report` alike: a PUT to a report
// URL (an nginx WebDAV location, say), else the remote's reports/ when the device may write there.

import SLMFormats
import SLMLocalStore
import SLMRemote
import Foundation

/// Where a device's reports go, and how: a PUT to a report URL, else the remote's reports/ when the
/// device may write there.
public struct ReportSink: Sendable {
    /// The remote the device follows.
    public var remote: any ReadableBackend
    /// PUT each report to `<reportURL>/<file>`; nil: the remote's reports/ when writable.
    public var reportURL: String?
    /// TLS files for the PUT.
    public var tls = Remotes.TLSFiles()
    /// Credentials for the PUT.
    public var credentials = HTTPCredentials.Sources()
    /// Polled during the PUT; true stops it.
    public var isCancelled: @Sendable () -> Bool = { false }
    /// Signs each report with the device's key (nil: unsigned format 1, which no fleet counts).
    public var signer: ReportSigner?
    /// The remote's URL as the user gave it: credentials found for the remote go to a report URL
    /// only on the same scheme, host and port.
    public var remoteURL: String?

    /// A sink for `remote`, PUT to `reportURL` when given.
    public init(remote: any ReadableBackend, reportURL: String?) {
        self.remote = remote
        self.reportURL = reportURL
    }

    /// Sends `report`; false when there is nowhere to send it (a read-only remote and no URL).
    @discardableResult
    public func send(_ report: DeviceReport) throws -> Bool {
        guard let bytes = try signer.map({ try $0.sign(report) }) ?? report.encoded() else {
            throw SLMError.failed("the device report would pass \(DeviceReport.maxEncodedSize) bytes")
        }
        let file = DeviceReport.fileName(device: report.device)
        if let base = reportURL {
            try put(bytes, to: base, file: file)
        } else if let remote = remote as? any StoreBackend {
            try remote.write("\(DeviceReport.directory)/\(file)", bytes: bytes)
        } else {
            return false
        }
        return true
    }

    /// PUT to `<base>/<file>` with the credentials and TLS files the remote uses for that host.
    private func put(_ bytes: [UInt8], to base: String, file: String) throws {
        guard let url = URL(string: (base.hasSuffix("/") ? String(base.dropLast()) : base) + "/" + file), url.host != nil,
              url.scheme == "http" || url.scheme == "https" else {
            throw SLMError.invalidSetting(.reportURL, problem: "\"\(HTTPCredentials.redact(base))\" is not an http(s) URL")
        }
        var policy = HTTPClient.Policy()
        policy.timeout = 10
        policy.deadline = 30
        policy.isCancelled = isCancelled
        try tls.resolved(environment: ProcessInfo.processInfo.environment).apply(to: &policy)
        var sources = credentials
        sources.environment = ProcessInfo.processInfo.environment
        if !Self.sameOrigin(url, remoteURL) {
            // The remote's token is for the remote: a report URL elsewhere gets only what is
            // configured for its own host (a netrc entry).
            sources.token = nil
            sources.tokenFile = nil
            sources.environment["SLMSTORE_TOKEN"] = nil
        }
        var headers = ["Content-Type": "application/json"]
        if let c = try HTTPCredentials.resolve(for: url, sources: sources) { headers["Authorization"] = c.authorization }
        let r = try HTTPClient(policy: policy).perform(URL(string: HTTPCredentials.redact(url.absoluteString)) ?? url, method: "PUT",
                                                       headers: headers, body: bytes, limit: 64 << 10)
        guard (200..<300).contains(r.status) else {
            throw SLMError.remoteStatus(url: HTTPCredentials.redact(url.absoluteString), status: r.status, problem: "the report was not stored")
        }
    }

    /// Whether `url` has the scheme, host and port of `remote` (a URL; a path or s3:// remote has none).
    static func sameOrigin(_ url: URL, _ remote: String?) -> Bool {
        guard let remote, let r = URL(string: remote), let scheme = r.scheme?.lowercased(), scheme == "http" || scheme == "https" else { return false }
        func port(_ u: URL) -> Int? { u.port ?? (u.scheme?.lowercased() == "https" ? 443 : 80) }
        return url.scheme?.lowercased() == scheme && url.host?.lowercased() == r.host?.lowercased() && port(url) == port(r)
    }
}
