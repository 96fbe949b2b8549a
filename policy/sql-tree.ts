/**
 * Walking libpg-query's JSON parse trees.
 */

/** A relation reference as the parse tree has it (a RangeVar's name fields). */
export interface RelationName {
  readonly schemaname?: string
  readonly relname: string
}

/** The first result `visit` gives for an object anywhere under `node` (itself included), depth first. */
export function firstObject<T>(node: unknown, visit: (object: Readonly<Record<string, unknown>>) => T | undefined): T | undefined {
  if (Array.isArray(node)) {
    for (const item of node) {
      const found = firstObject(item, visit)
      if (found !== undefined) return found
    }
    return undefined
  }
  if (node === null || typeof node !== 'object') return undefined
  const found = visit(node as Record<string, unknown>)
  if (found !== undefined) return found
  for (const value of Object.values(node)) {
    const inner = firstObject(value, visit)
    if (inner !== undefined) return inner
  }
  return undefined
}

/**
 * The first relation anywhere under `node` for which `match` gives a result. A
 * relation is a RangeVar: wrapped as `{RangeVar: {…}}` where any node may stand (FROM
 * items), bare where the field can only be one (the target of INSERT, UPDATE, DELETE,
 * COPY); either way it is the object with a string `relname`.
 */
export function firstRelation<T>(node: unknown, match: (relation: RelationName) => T | undefined): T | undefined {
  return firstObject(node, (object) => (typeof object.relname === 'string' ? match(object as unknown as RelationName) : undefined))
}

/** Whether an object anywhere under `node` has one of `keys` with a value (a node kind such as `InsertStmt`, or a field such as `intoClause`). */
export function holdsKey(node: unknown, keys: ReadonlySet<string>): boolean {
  return firstObject(node, (object) => (Object.keys(object).some((key) => keys.has(key) && object[key] != null) ? true : undefined)) === true
}
