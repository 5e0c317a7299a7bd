import Cache
import Foundation
import HTTP
import Namespace
import Writeback

/// What an operation answers: known at once (the FUSE adapter replies on the kernel request's thread, as
/// most lookups, getattrs and cached reads of a walk are), or to be found on a task (what needs the services).
public enum Answer<Value: Sendable>: Sendable {
    case now(Result<Value, any Error>)
    case later(@Sendable () async throws -> Value)

    /// The answer, waited for (tests, and callers without a kernel thread to spare).
    public var value: Value {
        get async throws {
            switch self {
            case .now(let result): try result.get()
            case .later(let fetch): try await fetch()
            }
        }
    }

    /// `known` when the tree has it, else `fetch`.
    static func either(_ known: Result<Value, any Error>?, _ fetch: @escaping @Sendable () async throws -> Value) -> Answer {
        known.map { .now($0) } ?? .later(fetch)
    }
}

/// The errno a failure of an operation is answered with.
public func errnoCode(for error: any Error) -> Int32 {
    switch error {
    case NamespaceError.notFound: ENOENT
    case NamespaceError.notDirectory: ENOTDIR
    case NamespaceError.isDirectory: EISDIR
    case NamespaceError.stale: ESTALE
    case NamespaceError.notPermitted: EPERM
    case NamespaceError.accessDenied: EACCES
    case NamespaceError.invalid: EINVAL
    case NamespaceError.exists: EEXIST
    case NamespaceError.notEmpty: ENOTEMPTY
    case let error as POSIXError: error.code.rawValue
    case let error as StagingError: error.errno
    case is SignInRequired: EACCES  // until the user signs in again (`crmfs login`)
    case is CancellationError: EINTR
    default: EIO
    }
}

