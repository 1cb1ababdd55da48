import pytest

from collectors import air

# altitude-thermal.md §1 table: h, T_ISA °C, p kPa, ρ_ISA, δ, ρ(p, 25 °C), M(δ)
TABLE = [
    (0, 15.0, 101.33, 1.225, 1.000, 1.184, 1.000),
    (1000, 8.5, 89.88, 1.112, 0.887, 1.050, 1.090),
    (2000, 2.0, 79.50, 1.007, 0.785, 0.929, 1.192),
    (2275, 0.2, 76.83, 0.979, 0.758, 0.898, 1.223),
    (2800, -3.2, 71.92, 0.928, 0.710, 0.840, 1.285),
    (3000, -4.5, 70.12, 0.909, 0.692, 0.819, 1.310),
    (3500, -7.7, 65.78, 0.863, 0.649, 0.769, 1.375),
    (4000, -11.0, 61.66, 0.819, 0.609, 0.720, 1.445),
    (4500, -14.2, 57.75, 0.777, 0.570, 0.675, 1.520),
]


@pytest.mark.parametrize(("h", "t_isa", "p_kpa", "rho_isa", "delta", "rho25", "m"), TABLE)
def test_air_matches_design_table(h, t_isa, p_kpa, rho_isa, delta, rho25, m):
    """ISA temperature, pressure, density, δ and M(δ) reproduce the design note's table."""
    assert air.isa_temperature_c(h) == pytest.approx(t_isa, abs=0.051)
    # the table uses geopotential altitude; the engine form agrees within 0.05 %
    assert air.pressure_pa_isa(h) / 1000 == pytest.approx(p_kpa, rel=5e-4)
    assert air.isa_density(h) == pytest.approx(rho_isa, abs=0.001)
    assert air.pressure_ratio_isa(h) == pytest.approx(delta, abs=0.001)
    assert air.air_density(air.pressure_pa_isa(h), 25.0) == pytest.approx(rho25, abs=0.001)
    assert air.cooling_multiplier(air.pressure_ratio_isa(h)) == pytest.approx(m, abs=0.001)


def test_air_pressure_altitude_inverts_delta():
    """Pressure altitude of 57.8 kPa is 4,491 m, as in test vector 3."""
    assert air.pressure_altitude_m(57_800 / air.P0_PA) == pytest.approx(4491, abs=1)


def test_air_dew_point_of_preheated_air():
    """10 °C air at 60 % RH has a 2.6 °C dew point (test vector 8)."""
    assert air.dew_point_c(10.0, 60.0) == pytest.approx(2.6, abs=0.05)


def test_air_board_chip_underestimate_at_altitude():
    """c(δ) is 2.6 K at 3,000 m and 4.3 K at 4,500 m."""
    assert air.board_chip_underestimate_k(air.pressure_ratio_isa(3000)) == pytest.approx(
        2.6, abs=0.05
    )
    assert air.board_chip_underestimate_k(air.pressure_ratio_isa(4500)) == pytest.approx(
        4.3, abs=0.05
    )
