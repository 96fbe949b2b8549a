/**
 * Walking libpg-query's JSON parse trees.
 */

/** A relation reference as the parse tree has it (a RangeVar's name fields). */
export interface RelationName {
  readonly schemaname?: string
  readonly relname: string
}

/**
 * The first relation anywhere under `node` for which `match` gives a result. A
 * relation is a RangeVar: wrapped as `{RangeVar: {…}}` where any node may stand (FROM
 * items), bare where the field can only be one (the target of INSERT, UPDATE, DELETE,
 * COPY); either way it is the object with a string `relname`.
 */
export function firstRelation<T>(node: unknown, match: (relation: RelationName) => T | undefined): T | undefined {
  if (Array.isArray(node)) {
    for (const item of node) {
      const found = firstRelation(item, match)
      if (found !== undefined) return found
    }
    return undefined
  }
  if (node === null || typeof node !== 'object') return undefined
  const record = node as { relname?: unknown; schemaname?: unknown }
  if (typeof record.relname === 'string') {
    const found = match(record as RelationName)
    if (found !== undefined) return found
  }
  for (const value of Object.values(node)) {
    const found = firstRelation(value, match)
    if (found !== undefined) return found
  }
  return undefined
}
