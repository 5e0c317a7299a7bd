import CRM
import Foundation
import HTTP

/// A CRM in memory, for tests of the tree: each object's records, answered to any query `FROM` that
/// object in Id order. Of a WHERE clause it knows only what the change feed asks (`SystemModstamp > T`,
/// and `IsDeleted = true` for the recycle bin; `queryAll` reads it too); other filters are the service's job, tested against the
/// sandbox. Writes through the service are refused; a test changes records as another user would.
public final class InMemoryRecords: RecordService, @unchecked Sendable {
    private let lock = NSLock()
    private var records: [String: [SObjectRecord]] = [:]
    private var deleted: [String: [SObjectRecord]] = [:]
    private var queries: [String] = []

    public init() {}

    /// Adds a record of `object` with these fields (`Id` among them), stamped now.
    public func add(_ object: String, _ fields: [String: JSONValue]) {
        lock.withLock { records[object, default: []].append(SObjectRecord(type: object, fields: Self.stamped(fields))) }
    }

    /// Changes fields of a record as another user would.
    public func update(_ object: String, _ id: String, _ fields: [String: JSONValue]) {
        lock.withLock {
            guard let index = records[object]?.firstIndex(where: { $0.id == id }) else { return }
            records[object]![index].fields = Self.stamped(records[object]![index].fields.merging(fields) { $1 })
        }
    }

    /// Deletes a record as another user would (it goes to the recycle bin).
    public func remove(_ object: String, _ id: String) {
        lock.withLock {
            guard let index = records[object]?.firstIndex(where: { $0.id == id }) else { return }
            let record = records[object]!.remove(at: index)
            deleted[object, default: []].append(SObjectRecord(type: object, fields: Self.stamped(record.fields.merging(["IsDeleted": .bool(true)]) { $1 })))
        }
    }

    private static func stamped(_ fields: [String: JSONValue]) -> [String: JSONValue] {
        fields.merging(["SystemModstamp": .string(Date().formatted(.iso8601))]) { $1 }
    }

    /// Every query asked so far.
    public var asked: [String] { lock.withLock { queries } }

    /// Whether queries fail, as when the service cannot be reached.
    private var unreachable = false
    public func failQueries(_ fail: Bool) { lock.withLock { unreachable = fail } }

    public func query(_ soql: String, includeDeleted: Bool, batchSize: Int?) async throws -> [SObjectRecord] {
        let words = soql.split(separator: " ")
        guard let from = words.firstIndex(where: { $0.uppercased() == "FROM" }), from + 1 < words.count else {
            throw RecordServiceRefusal(call: "query without FROM: \(soql)")
        }
        let object = String(words[from + 1])
        let since = words.firstIndex(of: "SystemModstamp").flatMap { words.indices.contains($0 + 2) ? ServiceTime.parse(String(words[$0 + 2])) : nil }
        let recycled = soql.contains("IsDeleted = true")
        return try lock.withLock {
            if unreachable { throw HTTPError.transport(code: 7, message: "Could not connect to server", request: "query \(soql)") }
            queries.append(soql)
            // `queryAll` reads the recycle bin too (its records say `IsDeleted`); `IsDeleted = true` reads only it.
            let source = recycled ? deleted[object] ?? [] : (records[object] ?? []) + (includeDeleted ? deleted[object] ?? [] : [])
            return source
                .filter { record in since.map { (ServiceTime.parse(record["SystemModstamp"]?.stringValue ?? "") ?? .distantFuture) > $0 } ?? true }
                .sorted { ($0.id ?? "") < ($1.id ?? "") }
        }
    }

    public func record(_ object: String, id: String, fields: [String]?) async throws -> SObjectRecord {
        guard let record = lock.withLock({ records[object]?.first { $0.id == id } }) else {
            throw RecordServiceRefusal(call: "record \(object)/\(id): not found")
        }
        return record
    }

    public func create(_ object: String, fields: [String: JSONValue]) async throws -> String { throw RecordServiceRefusal(call: "create \(object)") }
    public func update(_ object: String, id: String, fields: [String: JSONValue]) async throws { throw RecordServiceRefusal(call: "update \(object)") }
    public func upsert(_ object: String, externalIDField field: String, value: String, fields: [String: JSONValue]) async throws -> (id: String, created: Bool) {
        throw RecordServiceRefusal(call: "upsert \(object)")
    }
    public func delete(_ object: String, id: String) async throws { throw RecordServiceRefusal(call: "delete \(object)") }
}

/// A call a stand-in CRM does not answer.
public struct RecordServiceRefusal: Error, CustomStringConvertible {
    public var call: String
    public var description: String { "the stand-in CRM does not answer \(call)" }
}

/// A CRM that no test of this kind should reach: every call fails, saying so.
public struct UnreachableRecords: RecordService {
    public init() {}

    private func refuse(_ call: String) -> Error { RecordServiceRefusal(call: "\(call) in a test that links nothing") }

    public func query(_ soql: String, includeDeleted: Bool, batchSize: Int?) async throws -> [SObjectRecord] { throw refuse(soql) }
    public func record(_ object: String, id: String, fields: [String]?) async throws -> SObjectRecord { throw refuse("record \(object)") }
    public func create(_ object: String, fields: [String: JSONValue]) async throws -> String { throw refuse("create \(object)") }
    public func update(_ object: String, id: String, fields: [String: JSONValue]) async throws { throw refuse("update \(object)") }
    public func upsert(_ object: String, externalIDField field: String, value: String, fields: [String: JSONValue]) async throws -> (id: String, created: Bool) {
        throw refuse("upsert \(object)")
    }
    public func delete(_ object: String, id: String) async throws { throw refuse("delete \(object)") }
}
