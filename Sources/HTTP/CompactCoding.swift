import Foundation

/// A compact positional binary form for data crmfs keeps on local disk and reads back in bulk (the kept
/// tree): fields in a fixed order, integers as varints, strings length-prefixed. Decoding it costs a small
/// fraction of JSON's keyed decoding, which is what a remount would otherwise spend its first second on.
/// The writer and reader of a type must agree on its field order; a reader never trusts the bytes.
public struct CompactWriter {
    public private(set) var bytes: [UInt8] = []

    public init() {}

    public mutating func write(_ value: UInt64) {
        var value = value
        while value >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: value) | 0x80)
            value >>= 7
        }
        bytes.append(UInt8(value))
    }

    public mutating func write(_ value: Int64) { write(UInt64(bitPattern: (value << 1) ^ (value >> 63))) }  // zigzag
    public mutating func write(_ value: Int) { write(Int64(value)) }
    public mutating func write(_ value: Bool) { bytes.append(value ? 1 : 0) }
    public mutating func write(_ value: Double) { write(value.bitPattern) }

    public mutating func write(_ value: String) {
        var value = value
        value.withUTF8 { utf8 in
            write(UInt64(utf8.count))
            bytes.append(contentsOf: utf8)
        }
    }

    /// A presence flag, then the value when there is one.
    public mutating func write<T>(_ value: T?, _ writeValue: (inout CompactWriter, T) -> Void) {
        write(value != nil)
        if let value { writeValue(&self, value) }
    }

    public mutating func write(_ value: String?) { write(value) { $0.write($1) } }
    public mutating func write(_ value: Int64?) { write(value) { $0.write($1) } }
    public mutating func write(_ value: Int?) { write(value) { $0.write($1) } }

    public mutating func write(_ value: JSONValue) {
        switch value {
        case .null: bytes.append(0)
        case .bool(let flag): bytes.append(flag ? 2 : 1)
        case .number(let number): bytes.append(3); write(number)
        case .string(let text): bytes.append(4); write(text)
        case .array(let elements):
            bytes.append(5); write(UInt64(elements.count))
            for element in elements { write(element) }
        case .object(let members): bytes.append(6); write(members)
        }
    }

    public mutating func write(_ members: [String: JSONValue]) {
        write(UInt64(members.count))
        for (name, value) in members { write(name); write(value) }
    }

    public mutating func write(_ value: JSONValue?) { write(value) { $0.write($1) } }
    public mutating func write(_ value: [String: JSONValue]?) { write(value) { $0.write($1) } }
}

public struct CompactReader {
    public struct Malformed: Error { public init() {} }

    private let bytes: UnsafeRawBufferPointer
    private var offset = 0

    /// Reads `data` with `body`, which must consume all of it.
    public static func read<T>(_ data: Data, _ body: (inout CompactReader) throws -> T) throws -> T {
        try data.withUnsafeBytes { bytes in
            var reader = CompactReader(bytes: bytes)
            let value = try body(&reader)
            guard reader.offset == bytes.count else { throw Malformed() }
            return value
        }
    }

    private init(bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    public mutating func byte() throws -> UInt8 {
        guard offset < bytes.count else { throw Malformed() }
        defer { offset += 1 }
        return bytes[offset]
    }

    public mutating func unsigned() throws -> UInt64 {
        var value: UInt64 = 0
        for shift in stride(from: 0, to: 64, by: 7) {
            let next = try byte()
            value |= UInt64(next & 0x7F) << UInt64(shift)
            if next < 0x80 { return value }
        }
        throw Malformed()
    }

    public mutating func int64() throws -> Int64 {
        let zigzag = try unsigned()
        return Int64(bitPattern: zigzag >> 1) ^ -Int64(bitPattern: zigzag & 1)
    }

    public mutating func int() throws -> Int {
        guard let value = Int(exactly: try int64()) else { throw Malformed() }
        return value
    }

    public mutating func bool() throws -> Bool {
        switch try byte() {
        case 0: false
        case 1: true
        default: throw Malformed()
        }
    }

    public mutating func double() throws -> Double { Double(bitPattern: try unsigned()) }

    /// A count of things still to read, which the remaining bytes can hold (so a bad count cannot make
    /// the reader reserve memory it will never fill).
    public mutating func count() throws -> Int {
        let count = try unsigned()
        guard count <= UInt64(bytes.count - offset) else { throw Malformed() }
        return Int(count)
    }

    public mutating func string() throws -> String {
        let length = try count()
        defer { offset += length }
        return String(decoding: UnsafeRawBufferPointer(rebasing: bytes[offset..<offset + length]), as: UTF8.self)
    }

    public mutating func optional<T>(_ readValue: (inout CompactReader) throws -> T) throws -> T? {
        try bool() ? try readValue(&self) : nil
    }

    public mutating func optionalString() throws -> String? { try optional { try $0.string() } }

    public mutating func json() throws -> JSONValue {
        switch try byte() {
        case 0: return .null
        case 1: return .bool(false)
        case 2: return .bool(true)
        case 3: return .number(try double())
        case 4: return .string(try string())
        case 5:
            let count = try count()
            var elements: [JSONValue] = []
            elements.reserveCapacity(count)
            for _ in 0..<count { elements.append(try json()) }
            return .array(elements)
        case 6: return .object(try jsonObject())
        default: throw Malformed()
        }
    }

    public mutating func jsonObject() throws -> [String: JSONValue] {
        let count = try count()
        var members: [String: JSONValue] = Dictionary(minimumCapacity: count)
        for _ in 0..<count {
            let name = try string()
            members[name] = try json()
        }
        return members
    }
}
