// A small synchronous HTTP client over URLSession (FoundationNetworking on Linux) that treats
// every response as hostile: bodies are bounded while they arrive, redirects are limited, and
// each request has an idle timeout, a minimum transfer rate and an overall deadline, and stops
// within a quarter second of a cancel. One request, no retries: retry and rate limits are
// backend wrappers (Backend.swift).

import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

public struct HTTPResponse: Sendable {
    public var status: Int
    public var headers: [String: String]  // lowercased names
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

/// Unchecked: URLSession calls the delegate on one serial queue; the per-task states are reached
/// through `states`, which is only used under `lock`.
public final class HTTPClient: NSObject, URLSessionDataDelegate, @unchecked Sendable {
    public struct Policy: Sendable {
        /// Longest silence while waiting for bytes.
        public var timeout: TimeInterval = 30
        /// Longest a whole request may take, however steadily a server trickles.
        public var deadline: TimeInterval = 600
        public var maxRedirects = 5
        /// A request that receives fewer than `minimumRate` bytes a second, averaged over
        /// `rateWindow` seconds, is cut: a trickling server cannot hold it up to the deadline.
        public var minimumRate: Double = 1024
        public var rateWindow: TimeInterval = 30
        /// Checked four times a second while waiting; true cancels the request (SIGTERM).
        public var isCancelled: @Sendable () -> Bool = { false }
        public init() {}
    }

    private final class TaskState {
        var data: [UInt8] = []
        var limit: Int
        var response: HTTPURLResponse?
        var error: Error?
        var oversize = false
        var ignoredRange = false
        var expectsPartial = false
        var redirects = 0
        var overDeadline = false
        var tooSlow = false
        /// The server asked for credentials (a 401 challenge), which the caller's header did not satisfy.
        var challenged = false
        var cancelled = false
        /// Bytes received so far; read by the waiting thread for the rate check.
        var received = 0
        /// Where `Authorization` may go: never to another host a redirect names.
        var host: String?
        /// HEAD: Content-Length describes the file, not this (empty) body.
        var headOnly = false
        let done = DispatchSemaphore(value: 0)
        /// Signalled when body bytes arrive for the waiting thread (streaming) and at completion.
        let wake = DispatchSemaphore(value: 0)
        /// Set under `lock` at completion, after the last piece.
        var finished = false
        /// The caller consumes the body as it arrives (decided per request)...
        var streaming = false
        /// ...when the answer is a 2xx; pieces wait here, under `lock`, until it takes them.
        var streamBody = false
        var pending: [UInt8] = []
        init(limit: Int) { self.limit = limit }
    }

    public let policy: Policy
    private var session: URLSession!
    private let lock = NSLock()
    private var states: [Int: TaskState] = [:]

    public init(policy: Policy = Policy()) {
        self.policy = policy
        super.init()
        let config = URLSessionConfiguration.ephemeral
        config.timeoutIntervalForRequest = policy.timeout
        config.httpMaximumConnectionsPerHost = 8
        config.requestCachePolicy = .reloadIgnoringLocalCacheData
        config.urlCache = nil
        let queue = OperationQueue()
        // Delegate callbacks must arrive in order: body pieces are appended as they come.
        queue.maxConcurrentOperationCount = 1
        session = URLSession(configuration: config, delegate: self, delegateQueue: queue)
    }

    deinit { session.invalidateAndCancel() }

    /// Where a streamed body goes: `head` sees the status and headers once, before the first
    /// piece, and may refuse them by throwing; `body` then gets the pieces in order. Only a 2xx
    /// answer is streamed; any other body is kept whole (it is an error text) in the response.
    public struct BodyStream {
        public var head: (HTTPResponse) throws -> Void
        public var body: (UnsafeRawBufferPointer) throws -> Void
        public init(head: @escaping (HTTPResponse) throws -> Void, body: @escaping (UnsafeRawBufferPointer) throws -> Void) {
            self.head = head
            self.body = body
        }
    }

    /// One request. `limit` bounds the body; more is an error. Failures are
    /// `SLMError.transport`, transient when trying again may help. With `stream`, a 2xx body
    /// is handed over in pieces on this thread as it arrives instead of being returned, so what
    /// is held is what arrived faster than it was consumed (URLSession cannot pause a transfer:
    /// `limit` stays the bound), and the returned response's `streamed` counts it.
    public func perform(_ url: URL, method: String = "GET", headers: [String: String] = [:], body: [UInt8]? = nil,
                        limit: Int, stream: BodyStream? = nil) throws -> HTTPResponse {
        func fail(_ problem: String, transient: Bool) -> SLMError {
            .transport(url: url.absoluteString, problem: problem, transient: transient)
        }
        var request = URLRequest(url: url)
        request.httpMethod = method
        if let body { request.httpBody = Data(body) }
        request.timeoutInterval = policy.timeout
        for (k, v) in headers { request.setValue(v, forHTTPHeaderField: k) }
        request.setValue("identity", forHTTPHeaderField: "Accept-Encoding")
        let state = TaskState(limit: limit)
        state.expectsPartial = headers["Range"] != nil
        state.headOnly = method == "HEAD"
        state.streaming = stream != nil
        let task = session.dataTask(with: request)
        lock.lock()
        states[task.taskIdentifier] = state
        lock.unlock()
        state.host = url.host
        task.resume()
        let started = Timestamp.monotonicSeconds()
        var samples: [(Double, Int)] = [(started, 0)]
        var lastCheck = started
        var streamed = 0
        var consumerError: Error?
        while true {
            _ = state.wake.wait(timeout: .now() + 0.25)
            lock.lock()
            let finished = state.finished
            var piece: [UInt8] = []
            swap(&piece, &state.pending)
            let received = state.received
            lock.unlock()
            if let stream, !piece.isEmpty {
                do {
                    if streamed == 0, let r = state.response { try stream.head(HTTPResponse(status: r.statusCode, headers: Self.headers(of: r), body: [])) }
                    streamed += piece.count
                    try piece.withUnsafeBytes { try stream.body($0) }
                } catch {
                    consumerError = error
                    task.cancel()
                    state.done.wait()
                    break
                }
            }
            if finished { break }
            let now = Timestamp.monotonicSeconds()
            guard now - lastCheck >= 0.25 else { continue }
            lastCheck = now
            samples.append((now, received))
            while let first = samples.first, now - first.0 > policy.rateWindow { samples.removeFirst() }
            if policy.isCancelled() {
                state.cancelled = true
            } else if now - started > policy.deadline {
                state.overDeadline = true
            } else if now - started >= policy.rateWindow, let first = samples.first,
                      Double(received - first.1) < policy.minimumRate * (now - first.0) * 0.999 {
                state.tooSlow = true
            } else {
                continue
            }
            task.cancel()
            state.done.wait()
            break
        }
        lock.lock()
        states[task.taskIdentifier] = nil
        lock.unlock()
        if let consumerError { throw consumerError }
        if state.cancelled { throw SLMError.cancelled }
        if state.overDeadline {
            throw fail("no complete response within \(Int(policy.deadline)) s", transient: true)
        }
        if state.tooSlow {
            throw fail("transfer slower than \(Int(policy.minimumRate)) bytes/s over \(Int(policy.rateWindow)) s", transient: true)
        }
        if state.ignoredRange {
            throw fail("server ignored the Range header (answered 200 with the whole file)", transient: false)
        }
        if state.oversize {
            throw fail("response body larger than the \(limit) bytes expected", transient: false)
        }
        if state.redirects > policy.maxRedirects {
            throw fail("too many redirects (more than \(policy.maxRedirects))", transient: false)
        }
        if state.challenged {
            return HTTPResponse(status: state.response?.statusCode ?? 401, headers: [:], body: [])
        }
        if let error = state.error {
            let ns = error as NSError
            if ns.domain == NSURLErrorDomain && ns.code == NSURLErrorHTTPTooManyRedirects {
                throw fail("redirect loop", transient: false)
            }
            // A certificate the client does not accept stays unaccepted: no retry can fix it.
            if ns.domain == NSURLErrorDomain && (NSURLErrorClientCertificateRequired...NSURLErrorSecureConnectionFailed).contains(ns.code) {
                throw fail("TLS: \(ns.localizedDescription) (the server's certificate is not trusted by this system's CA bundle)", transient: false)
            }
            throw fail(ns.localizedDescription, transient: true)
        }
        guard let response = state.response else { throw fail("no response", transient: true) }
        var r = HTTPResponse(status: response.statusCode, headers: Self.headers(of: response), body: state.data)
        r.streamed = streamed
        return r
    }

    private static func headers(of response: HTTPURLResponse) -> [String: String] {
        var headers: [String: String] = [:]
        for (k, v) in response.allHeaderFields {
            if let k = k as? String, let v = v as? String { headers[k.lowercased()] = v }
        }
        return headers
    }

    private func state(_ task: URLSessionTask) -> TaskState? {
        lock.lock()
        defer { lock.unlock() }
        return states[task.taskIdentifier]
    }

    // MARK: URLSessionDataDelegate

    public func urlSession(_ session: URLSession, dataTask: URLSessionDataTask, didReceive response: URLResponse,
                           completionHandler: @escaping (URLSession.ResponseDisposition) -> Void) {
        if let s = state(dataTask) {
            s.response = response as? HTTPURLResponse
            if s.expectsPartial && s.response?.statusCode == 200 {
                s.ignoredRange = true
                completionHandler(.cancel)
                return
            }
            if !s.headOnly, let length = s.response?.expectedContentLength, length > Int64(s.limit) {
                s.oversize = true
                completionHandler(.cancel)
                return
            }
            let status = s.response?.statusCode ?? 0
            if s.streaming && (200..<300).contains(status) {
                s.streamBody = true
            } else if !s.headOnly, let length = s.response?.expectedContentLength, length > 0 {
                // Room for the whole body at once (it is bounded by `limit` above), instead of
                // doubling as pieces arrive.
                s.data.reserveCapacity(Int(length))
            }
        }
        completionHandler(.allow)
    }

    public func urlSession(_ session: URLSession, dataTask: URLSessionDataTask, didReceive data: Data) {
        guard let s = state(dataTask) else { return }
        // `received` is only written here, on the delegate queue.
        if s.received + data.count > s.limit {
            s.oversize = true
            dataTask.cancel()
            return
        }
        if s.streamBody {
            lock.lock()
            s.pending.append(contentsOf: data)
            s.received += data.count
            lock.unlock()
            s.wake.signal()
            return
        }
        s.data.append(contentsOf: data)
        lock.lock()
        s.received = s.data.count
        lock.unlock()
    }

    /// Credentials are sent as headers the caller sets; a server's challenge is never answered
    /// from here (answering "no" at once turns a 401 into a status the caller reports, instead of
    /// a request that waits for credentials nobody will give).
    public func urlSession(_ session: URLSession, task: URLSessionTask, didReceive challenge: URLAuthenticationChallenge,
                           completionHandler: @escaping (URLSession.AuthChallengeDisposition, URLCredential?) -> Void) {
        if let s = state(task) {
            s.challenged = true
            if let r = challenge.failureResponse as? HTTPURLResponse { s.response = r }
        }
        completionHandler(.cancelAuthenticationChallenge, nil)
    }

    public func urlSession(_ session: URLSession, task: URLSessionTask, willPerformHTTPRedirection response: HTTPURLResponse,
                           newRequest request: URLRequest, completionHandler: @escaping (URLRequest?) -> Void) {
        var next = request
        if let s = state(task) {
            s.redirects += 1
            if s.redirects > policy.maxRedirects {
                completionHandler(nil)
                task.cancel()
                return
            }
            // Credentials stay with the host they were given for.
            if request.url?.host != s.host { next.setValue(nil, forHTTPHeaderField: "Authorization") }
        }
        completionHandler(next)
    }

    public func urlSession(_ session: URLSession, task: URLSessionTask, didCompleteWithError error: Error?) {
        guard let s = state(task) else { return }
        if s.response == nil, let r = task.response as? HTTPURLResponse { s.response = r }
        s.error = s.oversize || s.ignoredRange || s.overDeadline || s.tooSlow || s.cancelled || s.challenged || s.redirects > policy.maxRedirects ? nil : error
        lock.lock()
        s.finished = true
        lock.unlock()
        s.done.signal()
        s.wake.signal()
    }
}
