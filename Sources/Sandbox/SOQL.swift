import Foundation

/// The subset of SOQL the sandbox answers: SELECT fields (with one level of parent relationship,
/// or COUNT()) FROM one object, WHERE with AND/OR/NOT, comparisons, IN, LIKE, ORDER BY, LIMIT, OFFSET.
struct SOQLQuery {
    indirect enum Expression {
        case comparison(field: String, op: String, value: Literal)
        case isIn(field: String, values: [Literal], negated: Bool)
        case and(Expression, Expression)
        case or(Expression, Expression)
        case not(Expression)
    }

    enum Literal: Equatable {
        case string(String)
        case number(Double)
        case bool(Bool)
        case null
        case dateTime(Date)
        case date(String)
    }

    var fields: [String]
    var isCount = false
    var object: String
    var filter: Expression?
    var orderBy: [(field: String, ascending: Bool, nullsFirst: Bool)] = []
    var limit: Int?
    var offset: Int?
}

struct SOQLError: Error {
    var code: String
    var message: String
}

enum SOQLParser {
    enum Token: Equatable {
        case word(String)
        case string(String)
        case number(String)
        case symbol(String)
    }

    static func parse(_ text: String) throws -> SOQLQuery {
        var parser = Parser(tokens: try tokenize(text), source: text)
        return try parser.query()
    }

    static func tokenize(_ text: String) throws -> [Token] {
        var tokens: [Token] = []
        let chars = Array(text)
        var i = 0
        while i < chars.count {
            let c = chars[i]
            if c.isWhitespace { i += 1; continue }
            if c == "'" {
                var value = ""
                i += 1
                while i < chars.count, chars[i] != "'" {
                    if chars[i] == "\\", i + 1 < chars.count {
                        let next = chars[i + 1]
                        value.append(next == "n" ? "\n" : next == "t" ? "\t" : next)
                        i += 2
                    } else {
                        value.append(chars[i]); i += 1
                    }
                }
                guard i < chars.count else { throw SOQLError(code: "MALFORMED_QUERY", message: "unexpected end of query: unterminated string") }
                i += 1
                tokens.append(.string(value))
            } else if c.isNumber || (c == "-" && i + 1 < chars.count && chars[i + 1].isNumber) {
                var value = String(c)
                i += 1
                while i < chars.count, chars[i].isNumber || "-:.TZ+".contains(chars[i]) { value.append(chars[i]); i += 1 }
                tokens.append(.number(value))
            } else if c.isLetter || c == "_" {
                var value = ""
                while i < chars.count, chars[i].isLetter || chars[i].isNumber || chars[i] == "_" || chars[i] == "." { value.append(chars[i]); i += 1 }
                tokens.append(.word(value))
            } else if "<>!=".contains(c) {
                var op = String(c)
                if i + 1 < chars.count, "=>".contains(chars[i + 1]), !(c == "=" ) { op.append(chars[i + 1]); i += 1 }
                i += 1
                tokens.append(.symbol(op))
            } else if "(),".contains(c) {
                tokens.append(.symbol(String(c))); i += 1
            } else {
                throw SOQLError(code: "MALFORMED_QUERY", message: "unexpected token: '\(c)'")
            }
        }
        return tokens
    }

    struct Parser {
        var tokens: [Token]
        var position = 0
        let source: String

        init(tokens: [Token], source: String) {
            self.tokens = tokens
            self.source = source
        }

        mutating func query() throws -> SOQLQuery {
            try expectKeyword("SELECT")
            var fields: [String] = []
            var isCount = false
            if case .word(let w) = peek, w.uppercased() == "COUNT", tokens.count > position + 2, tokens[position + 1] == .symbol("("), tokens[position + 2] == .symbol(")") {
                position += 3
                isCount = true
            } else {
                repeat {
                    guard case .word(let field) = next() else { throw malformed() }
                    fields.append(field)
                } while consume(.symbol(","))
            }
            try expectKeyword("FROM")
            guard case .word(let object) = next() else { throw malformed() }
            var query = SOQLQuery(fields: fields, isCount: isCount, object: object)
            if consumeKeyword("WHERE") { query.filter = try orExpression() }
            if consumeKeyword("ORDER") {
                try expectKeyword("BY")
                repeat {
                    guard case .word(let field) = next() else { throw malformed() }
                    var ascending = true
                    var nullsFirst = true
                    if consumeKeyword("DESC") { ascending = false; nullsFirst = false } else { _ = consumeKeyword("ASC") }
                    if consumeKeyword("NULLS") {
                        if consumeKeyword("LAST") { nullsFirst = false } else { try expectKeyword("FIRST"); nullsFirst = true }
                    }
                    query.orderBy.append((field, ascending, nullsFirst))
                } while consume(.symbol(","))
            }
            if consumeKeyword("LIMIT") {
                guard case .number(let n) = next(), let limit = Int(n) else { throw malformed() }
                query.limit = limit
            }
            if consumeKeyword("OFFSET") {
                guard case .number(let n) = next(), let offset = Int(n) else { throw malformed() }
                query.offset = offset
            }
            if position < tokens.count { throw malformed() }
            return query
        }

        mutating func orExpression() throws -> SOQLQuery.Expression {
            var left = try andExpression()
            while consumeKeyword("OR") { left = .or(left, try andExpression()) }
            return left
        }

        mutating func andExpression() throws -> SOQLQuery.Expression {
            var left = try unary()
            while consumeKeyword("AND") { left = .and(left, try unary()) }
            return left
        }

        mutating func unary() throws -> SOQLQuery.Expression {
            if consumeKeyword("NOT") { return .not(try unary()) }
            if consume(.symbol("(")) {
                let inner = try orExpression()
                guard consume(.symbol(")")) else { throw malformed() }
                return inner
            }
            guard case .word(let field) = next() else { throw malformed() }
            if consumeKeyword("IN") { return .isIn(field: field, values: try list(), negated: false) }
            if consumeKeyword("NOT") {
                try expectKeyword("IN")
                return .isIn(field: field, values: try list(), negated: true)
            }
            if consumeKeyword("LIKE") { return .comparison(field: field, op: "LIKE", value: try literal()) }
            guard case .symbol(let op) = next(), ["=", "!=", "<>", "<", ">", "<=", ">="].contains(op) else { throw malformed() }
            return .comparison(field: field, op: op == "<>" ? "!=" : op, value: try literal())
        }

        mutating func list() throws -> [SOQLQuery.Literal] {
            guard consume(.symbol("(")) else { throw malformed() }
            var values: [SOQLQuery.Literal] = []
            repeat { values.append(try literal()) } while consume(.symbol(","))
            guard consume(.symbol(")")) else { throw malformed() }
            return values
        }

        mutating func literal() throws -> SOQLQuery.Literal {
            switch next() {
            case .string(let s): return .string(s)
            case .number(let n):
                if n.contains("T") {
                    guard let date = SalesforceTime.parse(n.hasSuffix("Z") ? String(n.dropLast()) + "+0000" : n) else {
                        throw SOQLError(code: "INVALID_FIELD", message: "value of filter criterion for field is not a valid datetime: \(n)")
                    }
                    return .dateTime(date)
                }
                if n.filter({ $0 == "-" }).count == 2 { return .date(n) }
                guard let value = Double(n) else { throw malformed() }
                return .number(value)
            case .word(let w):
                switch w.uppercased() {
                case "TRUE": return .bool(true)
                case "FALSE": return .bool(false)
                case "NULL": return .null
                default: throw malformed(near: w)
                }
            default: throw malformed()
            }
        }

        var peek: Token? { position < tokens.count ? tokens[position] : nil }

        mutating func next() -> Token? {
            defer { position += 1 }
            return peek
        }

        mutating func consume(_ token: Token) -> Bool {
            if peek == token { position += 1; return true }
            return false
        }

        mutating func consumeKeyword(_ keyword: String) -> Bool {
            if case .word(let w) = peek, w.uppercased() == keyword { position += 1; return true }
            return false
        }

        mutating func expectKeyword(_ keyword: String) throws {
            guard consumeKeyword(keyword) else { throw malformed() }
        }

        func malformed(near word: String? = nil) -> SOQLError {
            let index = min(max(position - 1, 0), max(tokens.count - 1, 0))
            let near: String
            if let word { near = word } else if tokens.isEmpty { near = "" } else {
                switch tokens[index] {
                case .word(let w), .number(let w), .symbol(let w): near = w
                case .string(let s): near = "'\(s)'"
                }
            }
            return SOQLError(code: "MALFORMED_QUERY", message: "\n\(source)\n^\nERROR at Row:1:Column:1\nunexpected token: '\(near)'")
        }
    }
}

/// Evaluates a parsed query over records held as JSON objects.
struct SOQLEvaluator {
    /// Looks up a parent record for `Relationship.Field` paths.
    var parent: (_ id: String) -> [String: Any]?

    func matches(_ record: [String: Any], _ expression: SOQLQuery.Expression) -> Bool {
        switch expression {
        case .and(let a, let b): return matches(record, a) && matches(record, b)
        case .or(let a, let b): return matches(record, a) || matches(record, b)
        case .not(let e): return !matches(record, e)
        case .isIn(let field, let values, let negated):
            let value = self.value(record, field)
            let found = values.contains { compare(value, $0) == .orderedSame }
            return negated ? !found : found
        case .comparison(let field, let op, let literal):
            let value = self.value(record, field)
            if op == "LIKE" {
                guard let text = value as? String, case .string(let pattern) = literal else { return false }
                return like(text, pattern)
            }
            if literal == .null {
                let isNull = value == nil || value is NSNull
                return op == "=" ? isNull : op == "!=" ? !isNull : false
            }
            guard let order = compare(value, literal) else { return op == "!=" }
            switch op {
            case "=": return order == .orderedSame
            case "!=": return order != .orderedSame
            case "<": return order == .orderedAscending
            case ">": return order == .orderedDescending
            case "<=": return order != .orderedDescending
            case ">=": return order != .orderedAscending
            default: return false
            }
        }
    }

    func value(_ record: [String: Any], _ path: String) -> Any? {
        let parts = path.split(separator: ".").map(String.init)
        if parts.count == 1 { return field(record, parts[0]) }
        guard let schema = SalesforceSchema.object((record["attributes"] as? [String: Any])?["type"] as? String ?? ""),
              let reference = schema.relationship(parts[0]),
              let id = field(record, reference.name) as? String,
              let parentRecord = parent(id) else { return nil }
        return value(parentRecord, parts.dropFirst().joined(separator: "."))
    }

    private func field(_ record: [String: Any], _ name: String) -> Any? {
        if let exact = record[name] { return exact }
        return record.first { $0.key.caseInsensitiveCompare(name) == .orderedSame }?.value
    }

    func compare(_ value: Any?, _ literal: SOQLQuery.Literal) -> ComparisonResult? {
        guard let value, !(value is NSNull) else { return nil }
        switch literal {
        case .string(let s):
            guard let text = value as? String else { return nil }
            return text.compare(s, options: [.caseInsensitive])
        case .number(let n):
            guard let number = (value as? NSNumber)?.doubleValue else { return nil }
            return number < n ? .orderedAscending : number > n ? .orderedDescending : .orderedSame
        case .bool(let b):
            guard let flag = value as? Bool else { return nil }
            return flag == b ? .orderedSame : .orderedAscending
        case .dateTime(let date):
            guard let text = value as? String, let own = SalesforceTime.parse(text) else { return nil }
            return own.compare(date)
        case .date(let day):
            guard let text = value as? String else { return nil }
            return String(text.prefix(10)).compare(day)
        case .null:
            return nil
        }
    }

    func sortKey(_ lhs: Any?, _ rhs: Any?) -> ComparisonResult {
        switch (lhs, rhs) {
        case (let a as NSNumber, let b as NSNumber): return a.compare(b)
        case (let a as String, let b as String): return a.compare(b, options: [.caseInsensitive])
        default: return .orderedSame
        }
    }

    private func like(_ text: String, _ pattern: String) -> Bool {
        var regex = "^"
        for c in pattern {
            switch c {
            case "%": regex += ".*"
            case "_": regex += "."
            default: regex += NSRegularExpression.escapedPattern(for: String(c))
            }
        }
        regex += "$"
        return text.range(of: regex, options: [.regularExpression, .caseInsensitive]) != nil
    }
}
