import {NleError} from './errors.js'

/**
 * Fills `{{name}}` placeholders. Deliberately tiny: templates hold no logic. A placeholder
 * without a value is a bug in nle, so it fails loudly instead of leaving `{{x}}` in a unit file.
 */
export function renderTemplate(text: string, values: Readonly<Record<string, string | number>>, source = 'template'): string {
  return text.replaceAll(/\{\{(\w+)\}\}/g, (_, key: string) => {
    const value = values[key]
    if (value === undefined) {
      throw new NleError('TEMPLATE_MISSING_VALUE', `${source}: no value for {{${key}}}`)
    }
    return String(value)
  })
}
