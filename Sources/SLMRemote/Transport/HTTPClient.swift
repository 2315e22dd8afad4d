// A small synchronous HTTP client over libcurl (as casync, RAUC and OSTree use it) that treats
// every response as hostile: bodies are bounded while they arrive, redirects are limited (and
// never followed for a write), and each request has an idle timeout, a minimum transfer rate and
// an overall deadline (libcurl's own options) and stops within a second of a cancel. A streamed
// body is handed to its consumer from curl's write callback, so a slow consumer pauses the
// transfer instead of being buffered for. TLS: a private CA bundle and a client certificate
// (mutual TLS); proxies from HTTPS_PROXY / HTTP_PROXY / NO_PROXY as curl reads them. One request,
// no retries: retry and rate limits are backend wrappers (Backend.swift).

import SLMFormats
import SLMLocalStore
import Foundation
import CCurl

/// A response: status, headers and the body unless it was streamed.
public struct HTTPResponse: Sendable {
    /// The HTTP status.
    public var status: Int
    /// Headers by lowercased name.
    public var headers: [String: String]
    /// The body, when it was not streamed (and for any non-2xx answer).
    public var body: [UInt8]
    /// Body bytes handed to a `BodyStream` instead of kept in `body`.
    public var streamed = 0

    /// A whole body is as long as the server said (a short one is retried).
    func checkComplete(_ what: String) throws {
        if let length = headers["content-length"], Int(length) != body.count {
            throw SLMError.transport(url: what, problem: "short body: \(body.count) of \(length) bytes", transient: true)
        }
    }

    /// A range answer is exactly the bytes asked for: 206, the length of the range, and a
    /// Content-Range naming it. `failure` describes any other status.
    func checkRange(_ range: Range<UInt64>, _ what: String, failure: (HTTPResponse) -> SLMError) throws {
        try checkRangeHead(range, what, failure: failure)
        let got = body.count + streamed
        guard got == range.count else {
            throw SLMError.transport(url: what, problem: "range \(range.lowerBound)-\(range.upperBound - 1): got \(got) bytes, expected \(range.count)", transient: true)
        }
    }

    /// The part of `checkRange` the status line and headers can answer, before any body byte is used.
    func checkRangeHead(_ range: Range<UInt64>, _ what: String, failure: (HTTPResponse) -> SLMError) throws {
        let span = "\(range.lowerBound)-\(range.upperBound - 1)"
        guard status == 206 else {
            if status == 200 { throw SLMError.remote(url: what, problem: "server ignored the Range header (answered 200 with the whole file)") }
            throw failure(self)
        }
        if let cr = headers["content-range"], !cr.hasPrefix("bytes \(span)/") {
            throw SLMError.remote(url: what, problem: "Content-Range \"\(cr)\" does not match the request")
        }
    }
}

/// Unchecked: easy handles are kept in `idle` under `lock`; a handle is used by one thread at a
/// time, the one whose `perform` took it.
public final class HTTPClient: @unchecked Sendable {
    /// The bounds every request of a client keeps, and its TLS files.
    public struct Policy: Sendable {
        /// Longest silence while waiting for bytes (and for a connection).
        public var timeout: TimeInterval = 30
        /// Longest a whole request may take, however steadily a server trickles.
        public var deadline: TimeInterval = 600
        /// Redirects followed for a read (GET, HEAD); a write is never redirected.
        public var maxRedirects = 5
        /// A request that receives fewer than `minimumRate` bytes a second, averaged over
        /// `rateWindow` seconds, is cut: a trickling server cannot hold it up to the deadline.
        public var minimumRate: Double = 1024
        /// The window the minimum rate is averaged over, in seconds.
        public var rateWindow: TimeInterval = 30
        /// Checked at least once a second while waiting; true cancels the request (SIGTERM).
        public var isCancelled: @Sendable () -> Bool = { false }
        /// PEM file of the CAs to trust instead of the system's (a private PKI); nil: the system's.
        public var caBundle: String? = nil
        /// PEM client certificate and its key, for servers that ask for one (mutual TLS).
        public var clientCertificate: String? = nil
        /// The client certificate's key, when it is not in the certificate file.
        public var clientKey: String? = nil
        /// The defaults: 30 s idle timeout, 1 KiB/s over 30 s, 5 redirects, the system's CAs.
        public init() {}
    }

    /// The bounds and TLS files of every request.
    public let policy: Policy
    private let lock = NSLock()
    /// Finished handles, kept so their connections (and TLS sessions) are reused.
    private var idle: [UnsafeMutableRawPointer] = []
    /// Whether any request of this client has had an answer (guarded by `lock`): a refused
    /// connection before that is a wrong address or a server that is not running, not worth
    /// retrying; after it, a server restarting.
    private var hadAnswer = false

    private static let initialized: Bool = curl_global_init(Int(CURL_GLOBAL_DEFAULT)) == CURLE_OK

    /// A client keeping `policy`.
    public init(policy: Policy = Policy()) {
        self.policy = policy
    }

    deinit { for h in idle { curl_easy_cleanup(h) } }

    /// Where a streamed body goes: `head` sees the status and headers once, before the first
    /// piece, and may refuse them by throwing; `body` then gets the pieces in order. Only a 2xx
    /// answer is streamed; any other body is kept whole (it is an error text) in the response.
    public struct BodyStream {
        /// Sees the status and headers before the first body byte; throwing refuses them.
        public var head: (HTTPResponse) throws -> Void
        /// Gets the body's pieces in order.
        public var body: (UnsafeRawBufferPointer) throws -> Void
        /// A stream from its two callbacks.
        public init(head: @escaping (HTTPResponse) throws -> Void, body: @escaping (UnsafeRawBufferPointer) throws -> Void) {
            self.head = head
            self.body = body
        }
    }

    /// One transfer's state, reached from curl's callbacks through their user pointer.
    private final class Transfer {
        let limit: Int
        let stream: BodyStream?
        let expectsPartial: Bool
        let headOnly: Bool
        let follows: Bool
        let isCancelled: @Sendable () -> Bool
        let idleTimeout: Double
        var status = 0
        var headers: [String: String] = [:]
        var body: [UInt8] = []
        var received = 0
        var streamed = 0
        var streamingBody = false
        var consumerError: Error?
        var oversize = false, ignoredRange = false, cancelled = false, wentIdle = false
        var lastProgress = Timestamp.monotonicSeconds()
        var lastBytes: Int64 = -1

        init(limit: Int, stream: BodyStream?, expectsPartial: Bool, headOnly: Bool, follows: Bool, policy: Policy) {
            (self.limit, self.stream, self.expectsPartial, self.headOnly, self.follows) = (limit, stream, expectsPartial, headOnly, follows)
            isCancelled = policy.isCancelled
            idleTimeout = policy.timeout
        }

        /// A header line; false aborts the transfer.
        func header(_ line: String) -> Bool {
            if line.hasPrefix("HTTP/") {
                // A new response (after a 1xx or a redirect): only the last one counts.
                headers = [:]
                let parts = line.split(separator: " ", maxSplits: 2)
                status = parts.count > 1 ? Int(parts[1]) ?? 0 : 0
                return true
            }
            let trimmed = line.trimmingCharacters(in: .whitespacesAndNewlines)
            if trimmed.isEmpty { return endOfHeaders() }
            if let colon = trimmed.firstIndex(of: ":") {
                let name = trimmed[..<colon].lowercased()
                headers[name] = trimmed[trimmed.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            }
            return true
        }

        private func endOfHeaders() -> Bool {
            if status < 200 { return true }
            if follows && (300..<400).contains(status) && headers["location"] != nil { return true }
            if expectsPartial && status == 200 { ignoredRange = true; return false }
            if !headOnly, let length = headers["content-length"].flatMap({ Int($0) }), length > limit { oversize = true; return false }
            if let stream, (200..<300).contains(status), !headOnly {
                streamingBody = true
                do { try stream.head(HTTPResponse(status: status, headers: headers, body: [])) } catch {
                    consumerError = error
                    return false
                }
            } else if !headOnly, let length = headers["content-length"].flatMap({ Int($0) }), length > 0 {
                body.reserveCapacity(length)
            }
            return true
        }

        /// Body bytes; false aborts the transfer.
        func bodyBytes(_ buffer: UnsafeRawBufferPointer) -> Bool {
            if received + buffer.count > limit { oversize = true; return false }
            received += buffer.count
            if streamingBody {
                do { try stream!.body(buffer) } catch { consumerError = error; return false }
                streamed += buffer.count
            } else {
                body.append(contentsOf: buffer)
            }
            return true
        }

        /// Called by curl at least once a second; false aborts (a cancel, or no byte for `idleTimeout`).
        func progress(_ bytes: Int64) -> Bool {
            if isCancelled() { cancelled = true; return false }
            let now = Timestamp.monotonicSeconds()
            if bytes != lastBytes { lastBytes = bytes; lastProgress = now }
            if now - lastProgress > idleTimeout { wentIdle = true; return false }
            return true
        }
    }

    /// One request. `limit` bounds the body; more is an error. Failures are
    /// `SLMError.transport`, transient when trying again may help. With `stream`, a 2xx body
    /// is handed over in pieces on this thread as it arrives instead of being returned, and
    /// the returned response's `streamed` counts it.
    public func perform(_ url: URL, method: String = "GET", headers: [String: String] = [:], body: [UInt8]? = nil,
                        limit: Int, stream: BodyStream? = nil) throws -> HTTPResponse {
        let what = url.absoluteString
        func fail(_ problem: String, transient: Bool) -> SLMError { .transport(url: what, problem: problem, transient: transient) }
        guard Self.initialized else { throw fail("libcurl could not be initialised", transient: false) }
        let handle = try takeHandle()
        var keep = true
        defer {
            if keep { curl_easy_reset(handle); giveBack(handle) } else { curl_easy_cleanup(handle) }
        }
        let isRead = method == "GET" || method == "HEAD"
        let transfer = Transfer(limit: limit, stream: stream, expectsPartial: headers["Range"] != nil, headOnly: method == "HEAD",
                                follows: isRead && policy.maxRedirects > 0, policy: policy)
        let list = Self.headerList(headers, sendsBody: body != nil)
        defer { curl_slist_free_all(list) }
        let errorBuffer = UnsafeMutablePointer<CChar>.allocate(capacity: Int(CURL_ERROR_SIZE) + 1)
        errorBuffer.initialize(repeating: 0, count: Int(CURL_ERROR_SIZE) + 1)
        defer { errorBuffer.deallocate() }
        let started = Timestamp.monotonicSeconds()
        let payload = body ?? []
        let rc: CURLcode = payload.withUnsafeBytes { bytes in
            guard configure(handle, url: what, method: method, body: body == nil ? nil : bytes, headers: list,
                            errorBuffer: errorBuffer, transfer: transfer) else { return CURLE_BAD_FUNCTION_ARGUMENT }
            return curl_easy_perform(handle)
        }
        let elapsed = Timestamp.monotonicSeconds() - started
        let detail = String(cString: errorBuffer)
        if let e = transfer.consumerError { keep = false; throw e }
        if transfer.cancelled { keep = false; throw SLMError.cancelled }
        if transfer.ignoredRange { keep = false; throw fail("server ignored the Range header (answered 200 with the whole file)", transient: false) }
        if transfer.oversize { keep = false; throw fail("response body larger than the \(limit) bytes expected", transient: false) }
        if transfer.wentIdle { keep = false; throw fail("no bytes for \(Int(policy.timeout)) s", transient: true) }
        guard rc == CURLE_OK else {
            keep = false
            lock.lock()
            let answeredBefore = hadAnswer
            lock.unlock()
            var osError = 0
            _ = slm_curl_getinfo_long(handle, CURLINFO_OS_ERRNO, &osError)
            if rc == CURLE_COULDNT_CONNECT && osError == Int(ECONNREFUSED) && !answeredBefore && Self.proxyInEffect(for: url) == nil {
                let port = url.port ?? (url.scheme == "https" ? 443 : 80)
                throw fail("connection refused: nothing is listening at \(url.host ?? ""):\(port) (not retried)", transient: false)
            }
            throw Self.error(rc, detail: detail, elapsed: elapsed, policy: policy, url: url, fail: fail)
        }
        lock.lock()
        hadAnswer = true
        lock.unlock()
        var status = 0
        _ = slm_curl_getinfo_long(handle, CURLINFO_RESPONSE_CODE, &status)
        var r = HTTPResponse(status: status != 0 ? status : transfer.status, headers: transfer.headers, body: transfer.body)
        r.streamed = transfer.streamed
        return r
    }

    /// The request headers as curl takes them. curl would add Content-Type and 100-continue to a
    /// body it sends; S3 signs what it sends, and nobody wants 100-continue.
    private static func headerList(_ headers: [String: String], sendsBody: Bool) -> UnsafeMutablePointer<curl_slist>? {
        var sent = headers
        sent["Accept-Encoding"] = "identity"
        if sendsBody {
            if sent["Content-Type"] == nil && sent["content-type"] == nil { sent["Content-Type"] = "application/octet-stream" }
            sent["Expect"] = ""
        }
        var list: UnsafeMutablePointer<curl_slist>? = nil
        for (k, v) in sent.sorted(by: { $0.key < $1.key }) {
            list = curl_slist_append(list, v.isEmpty ? "\(k):" : "\(k): \(v)")
        }
        return list
    }

    /// Sets every option of one request on `handle`; false when curl refused one. `body` must
    /// outlive the transfer (curl sends it in place).
    private func configure(_ handle: UnsafeMutableRawPointer, url: String, method: String, body: UnsafeRawBufferPointer?,
                           headers list: UnsafeMutablePointer<curl_slist>?, errorBuffer: UnsafeMutablePointer<CChar>,
                           transfer: Transfer) -> Bool {
        var ok = true
        func set(_ o: CURLoption, _ v: Int) { ok = ok && slm_curl_setopt_long(handle, o, v) == CURLE_OK }
        func set(_ o: CURLoption, _ s: String) { ok = ok && slm_curl_setopt_string(handle, o, s) == CURLE_OK }
        set(CURLOPT_URL, url)
        set(CURLOPT_NOSIGNAL, 1)
        set(CURLOPT_PROTOCOLS_STR, "http,https")
        set(CURLOPT_REDIR_PROTOCOLS_STR, "http,https")
        set(CURLOPT_FOLLOWLOCATION, transfer.follows ? 1 : 0)
        set(CURLOPT_MAXREDIRS, policy.maxRedirects)
        set(CURLOPT_CONNECTTIMEOUT_MS, Int(policy.timeout * 1000))
        set(CURLOPT_TIMEOUT_MS, Int(policy.deadline * 1000))
        set(CURLOPT_LOW_SPEED_LIMIT, max(1, Int(policy.minimumRate)))
        set(CURLOPT_LOW_SPEED_TIME, max(1, Int(policy.rateWindow.rounded(.up))))
        set(CURLOPT_NOPROGRESS, 0)
        if let ca = policy.caBundle { set(CURLOPT_CAINFO, ca) }
        if let cert = policy.clientCertificate { set(CURLOPT_SSLCERT, cert) }
        if let key = policy.clientKey { set(CURLOPT_SSLKEY, key) }
        ok = ok && slm_curl_setopt_slist(handle, CURLOPT_HTTPHEADER, list) == CURLE_OK
        ok = ok && slm_curl_setopt_pointer(handle, CURLOPT_ERRORBUFFER, UnsafeMutableRawPointer(errorBuffer)) == CURLE_OK
        switch method {
        case "GET": set(CURLOPT_HTTPGET, 1)
        case "HEAD": set(CURLOPT_NOBODY, 1)
        default:
            set(CURLOPT_CUSTOMREQUEST, method)
            if body != nil || method == "PUT" || method == "POST" {
                ok = ok && slm_curl_setopt_off(handle, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(body?.count ?? 0)) == CURLE_OK
                let base = body?.baseAddress ?? UnsafeRawPointer(errorBuffer)
                ok = ok && slm_curl_setopt_pointer(handle, CURLOPT_POSTFIELDS, UnsafeMutableRawPointer(mutating: base)) == CURLE_OK
            }
        }
        let user = Unmanaged.passUnretained(transfer).toOpaque()
        ok = ok && slm_curl_setopt_write(handle, CURLOPT_HEADERFUNCTION, { ptr, size, count, user in
            let n = size * count
            let t = Unmanaged<Transfer>.fromOpaque(user!).takeUnretainedValue()
            let line = String(decoding: UnsafeRawBufferPointer(start: ptr, count: n), as: UTF8.self)
            return t.header(line) ? n : 0
        }) == CURLE_OK
        ok = ok && slm_curl_setopt_pointer(handle, CURLOPT_HEADERDATA, user) == CURLE_OK
        ok = ok && slm_curl_setopt_write(handle, CURLOPT_WRITEFUNCTION, { ptr, size, count, user in
            let n = size * count
            let t = Unmanaged<Transfer>.fromOpaque(user!).takeUnretainedValue()
            return t.bodyBytes(UnsafeRawBufferPointer(start: ptr, count: n)) ? n : 0
        }) == CURLE_OK
        ok = ok && slm_curl_setopt_pointer(handle, CURLOPT_WRITEDATA, user) == CURLE_OK
        ok = ok && slm_curl_setopt_xferinfo(handle, { user, _, dlnow, _, ulnow in
            Unmanaged<Transfer>.fromOpaque(user!).takeUnretainedValue().progress(Int64(dlnow) + Int64(ulnow)) ? Int32(0) : Int32(1)
        }) == CURLE_OK
        ok = ok && slm_curl_setopt_pointer(handle, CURLOPT_XFERINFODATA, user) == CURLE_OK
        return ok
    }

    /// What a failed transfer means for the caller: TLS and protocol problems are final,
    /// network trouble is worth a retry.
    private static func error(_ rc: CURLcode, detail: String, elapsed: Double, policy: Policy, url: URL,
                              fail: (String, Bool) -> SLMError) -> SLMError {
        let text = detail.isEmpty ? String(cString: curl_easy_strerror(rc)) : detail
        // A connection that failed at a proxy names the proxy: the remote may be fine.
        if [CURLE_COULDNT_CONNECT, CURLE_COULDNT_RESOLVE_PROXY, CURLE_RECV_ERROR, CURLE_SEND_ERROR, CURLcode(97)].contains(rc),
           let (proxy, variable) = proxyInEffect(for: url) {
            return fail("could not get through the proxy \(HTTPCredentials.redact(proxy)) (from \(variable)): \(text)", true)
        }
        let lower = text.lowercased()
        switch rc {
        case CURLE_OPERATION_TIMEDOUT:
            if elapsed >= policy.deadline - 0.05 { return fail("no complete response within \(Int(policy.deadline)) s", true) }
            if elapsed >= policy.rateWindow - 0.05 {
                return fail("transfer slower than \(Int(policy.minimumRate)) bytes/s over \(Int(policy.rateWindow)) s", true)
            }
            return fail("timed out: \(text)", true)
        case CURLE_TOO_MANY_REDIRECTS:
            return fail("too many redirects (more than \(policy.maxRedirects))", false)
        case CURLE_SSL_CONNECT_ERROR, CURLE_PEER_FAILED_VERIFICATION, CURLE_SSL_CERTPROBLEM, CURLE_SSL_CIPHER,
             CURLE_SSL_CACERT_BADFILE, CURLE_SSL_ISSUER_ERROR, CURLE_SSL_CRL_BADFILE, CURLE_USE_SSL_FAILED,
             CURLE_SSL_ENGINE_NOTFOUND, CURLE_SSL_ENGINE_SETFAILED, CURLE_SSL_ENGINE_INITFAILED, CURLE_SSL_PINNEDPUBKEYNOTMATCH:
            // The hint that fits what went wrong, not every TLS hint at once.
            if lower.contains("wrong version number") || lower.contains("packet length too long") || lower.contains("record layer failure") {
                return fail("TLS: the server did not answer in TLS (\(text)); is this a plain http:// port?", false)
            }
            if lower.contains("subject name") || lower.contains("does not match target host") || lower.contains("hostname mismatch") {
                return fail("TLS: the server's certificate is not for the host \(url.host ?? "") (\(text))", false)
            }
            if lower.contains("certificate required") || (lower.contains("alert") && lower.contains("handshake failure")) {
                return fail("TLS: the server asks for a client certificate (\(text))", false).remedied(by: .presentClientCertificate)
            }
            guard let bundle = policy.caBundle else {
                if lower.contains("issuer") || lower.contains("self-signed") || lower.contains("self signed") || lower.contains("verify") {
                    return fail("TLS: the server's certificate is signed by a CA this system does not trust (\(text))", false)
                        .remedied(by: .trustPrivateCA)
                }
                return fail("TLS: \(text) (the server's certificate must be trusted by this system's CA bundle)", false)
                    .remedied(by: .trustPrivateCA).remedied(by: .presentClientCertificate)
            }
            return fail("TLS: \(text) (the server's certificate must be trusted by the CA bundle \(bundle))", false)
                .remedied(by: .presentClientCertificate)
        case CURLE_UNSUPPORTED_PROTOCOL, CURLE_URL_MALFORMAT, CURLE_BAD_FUNCTION_ARGUMENT, CURLE_NOT_BUILT_IN:
            return fail(text, false)
        default:
            return fail(text, true)
        }
    }

    /// The proxy curl uses for `url` from the environment, and the variable it came from (nil
    /// when none applies: unset, or the host is in NO_PROXY).
    static func proxyInEffect(for url: URL, environment: [String: String] = ProcessInfo.processInfo.environment) -> (String, String)? {
        guard let host = url.host?.lowercased() else { return nil }
        let noProxy = (environment["no_proxy"] ?? environment["NO_PROXY"] ?? "").lowercased()
        for entry in noProxy.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) where !entry.isEmpty {
            let bare = entry.hasPrefix(".") ? String(entry.dropFirst()) : entry
            if entry == "*" || host == bare || host.hasSuffix("." + bare) { return nil }
        }
        // curl reads only the lowercase http_proxy (for CGI safety), the others in either case.
        let names = url.scheme == "https" ? ["https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"] : ["http_proxy", "all_proxy", "ALL_PROXY"]
        for name in names { if let value = environment[name], !value.isEmpty { return (value, name) } }
        return nil
    }

    private func takeHandle() throws -> UnsafeMutableRawPointer {
        lock.lock()
        let reused = idle.popLast()
        lock.unlock()
        if let reused { return reused }
        guard let h = curl_easy_init() else { throw SLMError.failed("libcurl could not make a transfer handle") }
        return h
    }

    private func giveBack(_ h: UnsafeMutableRawPointer) {
        lock.lock()
        defer { lock.unlock() }
        if idle.count < 16 { idle.append(h) } else { curl_easy_cleanup(h) }
    }
}
