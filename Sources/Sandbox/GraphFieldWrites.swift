import Foundation

/// `PATCH .../listItem/fields` per docs/wire-facts.md G8: a flat fieldValueSet checked against the library's
/// columns (names, read-only and system columns, each column type), If-Match guarded, answered 200
/// with the whole fieldValueSet. A column change is a new eTag, not a new cTag.
extension GraphService {
    func updateFields(_ request: SandboxRequest, item: ItemRow, drive: DriveRow) throws -> SandboxResponse {
        stats.increment("graph.fields.update")
        try checkPreconditions(request, item: item)
        let values = try jsonBody(request)
        let columns = try store.columns(listID: drive.listId).compactMap { definition in
            (try? JSONSerialization.jsonObject(with: Data(definition.utf8))) as? [String: Any]
        }
        var checked: [String: Any?] = [:]
        for (name, value) in values {
            guard let column = columns.first(where: { $0["name"] as? String == name }) else {
                throw GraphErrors.failure(400, "invalidRequest", "Field '\(name)' is not recognized")
            }
            if column["readOnly"] as? Bool == true || column["calculated"] != nil || !Self.hasTypeFacet(column) {
                throw GraphErrors.failure(400, "invalidRequest", "Field '\(name)' is read-only")
            }
            checked[name] = value is NSNull ? .some(nil) : try Self.checked(value, for: column, name: name)
        }
        guard let saved = try store.update(itemID: item.id, expecting: guardedVersion(request, item: item), { row in
            var fields = (try JSONSerialization.jsonObject(with: Data(row.fields.utf8)) as? [String: Any]) ?? [:]
            for (name, value) in checked { fields[name] = value }
            row.fields = FlatJSON.encode(fields)
        }) else { throw notFound() }
        return .json(200, try fieldsJSON(saved))
    }

    private static let typeFacets = ["boolean", "calculated", "choice", "currency", "dateTime", "lookup", "number", "personOrGroup",
                                     "text", "term", "hyperlinkOrPicture", "thumbnail", "contentApprovalStatus", "geolocation"]

    private static func hasTypeFacet(_ column: [String: Any]) -> Bool { typeFacets.contains { column[$0] != nil } }

    /// The value as the column stores it, or 400 with what is wrong.
    private static func checked(_ value: Any, for column: [String: Any], name: String) throws -> Any {
        func refuse(_ why: String) -> ServiceFailure {
            GraphErrors.failure(400, "invalidRequest", "Invalid value for field '\(name)': \(why)")
        }
        if let text = column["text"] as? [String: Any] {
            guard let string = value as? String else { throw refuse("expected text") }
            if let limit = text["maxLength"] as? Int, string.count > limit { throw refuse("longer than \(limit) characters") }
            return string
        }
        if let choice = column["choice"] as? [String: Any] {
            guard let string = value as? String else { throw refuse("expected one of the choices") }
            let choices = choice["choices"] as? [String] ?? []
            if choice["allowTextEntry"] as? Bool != true, !choices.contains(string) { throw refuse("'\(string)' is not one of \(choices)") }
            return string
        }
        if column["number"] != nil || column["currency"] != nil {
            guard let number = value as? NSNumber, !(value is String) else { throw refuse("expected a number") }
            return number.doubleValue
        }
        if column["boolean"] != nil {
            guard let flag = value as? Bool else { throw refuse("expected true or false") }
            return flag
        }
        if column["dateTime"] != nil {
            guard let string = value as? String, let date = GraphTime.parse(string) else { throw refuse("expected an ISO 8601 date and time") }
            return GraphTime.format(date)
        }
        throw refuse("this column type cannot be written here")
    }
}
