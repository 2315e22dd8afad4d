// The errors the library reports. Each case carries what a user needs to act on it;
// `description` is the one-line message the command prints.

public enum SLMError: Error, CustomStringConvertible, Equatable {
    /// A file or directory named by the user cannot be used.
    case input(path: String, problem: String)
    /// A command-line argument, reference, name or version is malformed.
    case argument(String)
    /// Something asked for does not exist in the store.
    case notFound(String)
    /// The request conflicts with what the store already holds.
    case conflict(String)
    /// Bytes in the store (or from a remote) are not what they claim to be.
    case corrupt(path: String, problem: String)
    /// An operating-system call failed.
    case io(path: String, operation: String, errno: Int32)
    /// A remote answered badly.
    case remote(url: String, problem: String)
    /// Anything else that stops the operation, worded for the user.
    case failed(String)

    public var description: String {
        switch self {
        case let .input(path, problem): return "\(path): \(problem)"
        case let .argument(message): return message
        case let .notFound(message): return message
        case let .conflict(message): return message
        case let .corrupt(path, problem): return "\(path): corrupt: \(problem)"
        case let .io(path, operation, code):
            return "\(path): \(operation) failed: \(String(cString: strerror(code)))"
        case let .remote(url, problem): return "\(url): \(problem)"
        case let .failed(message): return message
        }
    }

    /// Process exit status for this kind of error, so scripts can tell them apart.
    public var exitCode: Int32 {
        switch self {
        case .argument: return 2
        case .notFound: return 3
        case .conflict: return 4
        case .corrupt: return 5
        case .remote: return 6
        default: return 1
        }
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
