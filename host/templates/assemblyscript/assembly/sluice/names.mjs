// An asc transform (`--transform`): gives the exports of sluice/exports.ts the names the
// component model's canonical ABI expects, which an AssemblyScript identifier cannot spell.
// `sluice plugin componentize` then finds them by those names.

const HANDLER = 'sluice:plugin/message-handler@0.1.0';
const LIFECYCLE = 'sluice:plugin/lifecycle@0.1.0';

const NAMES = {
  sluice_handle: `${HANDLER}#handle`,
  sluice_handle_batch: `${HANDLER}#handle-batch`,
  sluice_init: `${LIFECYCLE}#init`,
  sluice_post_handle: `cabi_post_${HANDLER}#handle`,
  sluice_post_handle_batch: `cabi_post_${HANDLER}#handle-batch`,
  sluice_post_init: `cabi_post_${LIFECYCLE}#init`,
};

export default class ComponentNames {
  afterCompile(module) {
    const renames = [];
    for (let i = 0, n = module.getNumExports(); i < n; i++) {
      const info = this.binaryen.getExportInfo(module.getExportByIndex(i));
      if (Object.hasOwn(NAMES, info.name)) renames.push(info);
    }
    for (const { name, value } of renames) {
      module.removeExport(name);
      module.addFunctionExport(value, NAMES[name]);
    }
  }
}
