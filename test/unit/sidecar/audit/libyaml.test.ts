// YAML syntax as libyaml reads it (go-yaml v2, inside sigs.k8s.io/yaml): the first document's nodes.
// The expectations follow go-yaml v2.4.4, against which they were checked.
import assert from 'node:assert/strict';
import { firstYamlDocument, LibyamlError, type YamlNode } from '../../../../sidecar/audit/libyaml.js';

/** The node tree, plainly: scalars as [value, tag?], mappings as [key, value] pairs, aliases by name. */
function plain(node: YamlNode | undefined): unknown {
  if (!node) return undefined;
  switch (node.kind) {
    case 'scalar':
      return node.tag ? [node.value, node.tag] : node.implicit ? node.value : [node.value];
    case 'alias':
      return `*${node.name}`;
    case 'mapping':
      return { pairs: node.pairs.map(([k, v]) => [plain(k), plain(v)]) };
    case 'sequence':
      return node.items.map(plain);
  }
}

const parse = (text: string) => plain(firstYamlDocument(text));

describe('sidecar/audit/libyaml', function () {
  it('reads block and flow collections, quoted scalars as not implicit, empty values as empty plain scalars', function () {
    assert.deepEqual(parse('a: 1\nb:\n  - x\n  - "y"\nc: {d: e, f}\n'), {
      pairs: [
        ['a', '1'],
        ['b', ['x', ['y']]],
        ['c', { pairs: [['d', 'e'], ['f', '']] }],
      ],
    });
    assert.deepEqual(parse('a:\n- x\n- y\nb: 2\n'), { pairs: [['a', ['x', 'y']], ['b', '2']] }, 'an indentless sequence');
    assert.deepEqual(parse('? a\n: b\n? c\n'), { pairs: [['a', 'b'], ['c', '']] }, 'explicit keys');
    assert.deepEqual(parse('[a: b, c]\n'), [{ pairs: [['a', 'b']] }, 'c'], 'a pair in a flow sequence is a mapping of its own');
  });

  it('folds and chomps scalars as libyaml does', function () {
    assert.deepEqual(parse('a: |\n  x\n   y\n\n\nb: >-\n  x\n  y\n\n  z\nc: |+\n  k\n\n'), {
      pairs: [
        ['a', ['x\n y\n']],
        ['b', ['x y\nz']],
        ['c', ['k\n\n']],
      ],
    });
    assert.deepEqual(parse('a: plain\n  more\n\n  lines\n'), { pairs: [['a', 'plain more\nlines']] });
    assert.deepEqual(parse('a: "x\\\n  y\\ z"\n'), { pairs: [['a', ['xy z']]] });
  });

  it('binds each alias to the latest anchor of its name before it', function () {
    const root = firstYamlDocument('a: &x 1\nb: *x\nc: &x 2\nd: *x\n');
    assert.ok(root?.kind === 'mapping');
    const targets = root.pairs.map(([, v]) => (v.kind === 'alias' ? (v.target as { value?: string }).value : undefined));
    assert.deepEqual(targets, [undefined, '1', undefined, '2']);
    assert.throws(() => firstYamlDocument('a: *nowhere\n'), /unknown anchor 'nowhere'/);
  });

  it('resolves tags by their handles, and gives the non-specific tag to a plain scalar as implicit', function () {
    assert.deepEqual(parse('%TAG !e! tag:example.com,2000:\n---\na: !e!x 1\nb: !!str 2\nc: !<tag:yaml.org,2002:int> 3\nd: ! 4\n'), {
      pairs: [
        ['a', ['1', 'tag:example.com,2000:x']],
        ['b', ['2', 'tag:yaml.org,2002:str']],
        ['c', ['3', 'tag:yaml.org,2002:int']],
        ['d', ['4', '!']],
      ],
    });
    assert.throws(() => firstYamlDocument('a: !u!x 1\n'), /undefined tag handle/);
  });

  it('reads only as far as the first document goes, and nothing of a stream without one', function () {
    assert.deepEqual(parse('a: 1\n---\n[[[ unclosed'), { pairs: [['a', '1']] });
    assert.deepEqual(parse('{a: 1}\nb: 2\n'), { pairs: [['a', '1']] }, 'a root flow collection ends the document');
    assert.equal(parse(''), undefined);
    assert.equal(parse('# nothing\n'), undefined);
    assert.deepEqual(parse('---\n'), '', 'an explicit empty document is an empty scalar');
  });

  it('fails where libyaml fails', function () {
    for (const text of ['a: b: c\n', 'a:\n\t- x\n', 'a: "unterminated\n', '- a\nb: c\n', '%YAML 2.0\n---\na\n', 'a: &x.y 1\n', '"\\/"\n']) {
      assert.throws(() => firstYamlDocument(text), LibyamlError, JSON.stringify(text));
    }
  });
});
