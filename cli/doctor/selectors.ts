// Label selectors as the API server applies a webhook's namespaceSelector and objectSelector.
import type { V1LabelSelector } from '@kubernetes/client-node';

type Labels = Readonly<Record<string, string>>;

/** An absent or empty selector selects everything. An unknown operator selects nothing, as the API server would refuse it. */
export function selects(selector: V1LabelSelector | undefined, labels: Labels): boolean {
  for (const [key, value] of Object.entries(selector?.matchLabels ?? {})) if (labels[key] !== value) return false;
  return (selector?.matchExpressions ?? []).every(({ key, operator, values = [] }) => {
    const has = Object.hasOwn(labels, key);
    switch (operator) {
      case 'In':
        return has && values.includes(labels[key]!);
      case 'NotIn':
        return !has || !values.includes(labels[key]!);
      case 'Exists':
        return has;
      case 'DoesNotExist':
        return !has;
      default:
        return false;
    }
  });
}

/** A selector as one line, in the syntax kubectl's -l takes. */
export function describeSelector(selector: V1LabelSelector | undefined): string {
  const parts = [
    ...Object.entries(selector?.matchLabels ?? {}).map(([key, value]) => `${key}=${value}`),
    ...(selector?.matchExpressions ?? []).map(({ key, operator, values = [] }) => {
      if (operator === 'Exists') return key;
      if (operator === 'DoesNotExist') return `!${key}`;
      return `${key} ${operator.toLowerCase()} (${values.join(',')})`;
    }),
  ];
  return parts.length > 0 ? parts.join(', ') : '(everything)';
}
