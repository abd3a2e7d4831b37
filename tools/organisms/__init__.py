"""The model-organism runtime: specs (data), feature reading, registered policies,
and the ``organism/<id>`` model client. Specs live in evals/organisms/."""

from tools.organisms.spec import OrganismError, OrganismSpec, Truth, load_organism_file

__all__ = ["OrganismError", "OrganismSpec", "Truth", "load_organism_file"]
