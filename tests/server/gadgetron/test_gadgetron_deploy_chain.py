"""The example chain in ``deploy/gadgetron/``: a Gadgetron v2 configuration whose external node
connects to the command's default port, and whose ``<configuration>``, sent as Gadgetron
sends it, selects a registered pipeline that reconstructs Shepp-Logan data."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

from mrzero.client import open_mrd
from mrzero.commands.gadgetron_external import DEFAULT_PORT
from mrzero.pipelines import registry
from mrzero.server.framing import header_message
from mrzero.server.gadgetron.peer import config_message, run_chain
from mrzero.server.gadgetron.wire import parse_configuration

CHAIN = Path(__file__).resolve().parents[3] / "deploy" / "gadgetron" / "mrzero_external.xml"


def external_node() -> ElementTree.Element:
    root = ElementTree.parse(CHAIN).getroot()
    assert root.tag == "configuration" and root.findtext("version") == "2"
    nodes = root.findall("./stream/external")
    assert len(nodes) == 1
    return nodes[0]


def test_the_chain_connects_to_the_default_port_and_names_a_registered_pipeline():
    node = external_node()
    assert node.find("connect").get("port") == str(DEFAULT_PORT)
    sent = ElementTree.tostring(node.find("configuration"), encoding="unicode")
    assert registry.get(parse_configuration(sent)["pipeline"]).name == "cartesian"


@pytest.mark.needs_ismrmrd_tools
def test_the_chains_configuration_reconstructs(gadget, shepp_logan):
    sent = '<?xml version="1.0"?>\n' + ElementTree.tostring(
        external_node().find("configuration"), encoding="unicode"
    )
    mrd = open_mrd(shepp_logan)
    answer = run_chain(gadget.address, config_message(sent) + header_message(mrd.header_xml), mrd.items)
    assert answer.closed and answer.errors == [] and len(answer.images) == 1
